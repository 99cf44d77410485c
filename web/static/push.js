// Turns on browser notifications for this device (issue 10.3): registers
// the service worker, asks the browser for a push subscription tied to
// the gateway's VAPID key, and sends it with the account page's form.
// Without JavaScript (or push support) the page explains instead.
'use strict';
(function () {
  const form = document.getElementById('push-form');
  if (!form) return;
  const status = document.getElementById('push-status');
  const say = (t) => { if (status) status.textContent = t; };
  const supported = 'serviceWorker' in navigator && 'PushManager' in window && 'Notification' in window;
  const ios = /iPad|iPhone|iPod/.test(navigator.userAgent) ||
    (navigator.platform === 'MacIntel' && navigator.maxTouchPoints > 1);
  const standalone = window.matchMedia('(display-mode: standalone)').matches || navigator.standalone === true;
  if (!supported) {
    say(ios && !standalone
      ? 'On an iPhone or iPad, add the portal to your Home Screen first (see below), then open it from there.'
      : 'This browser cannot show notifications from the portal.');
    return;
  }
  if (ios && !standalone) {
    say('Open the portal from your Home Screen icon to turn notifications on.');
  }
  function keyBytes(b64) {
    const s = atob(b64.replace(/-/g, '+').replace(/_/g, '/') + '='.repeat((4 - b64.length % 4) % 4));
    return Uint8Array.from(s, (c) => c.charCodeAt(0));
  }
  form.hidden = false;
  form.addEventListener('submit', async (e) => {
    if (form.elements.endpoint.value) return; // filled: send it
    e.preventDefault();
    try {
      if (await Notification.requestPermission() !== 'granted') {
        say('Notifications are blocked for this site in the browser settings.');
        return;
      }
      const reg = await navigator.serviceWorker.register('/sw.js', { scope: '/' });
      await navigator.serviceWorker.ready;
      const sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: keyBytes(form.dataset.key) });
      const j = sub.toJSON();
      form.elements.endpoint.value = j.endpoint;
      form.elements.p256dh.value = j.keys.p256dh;
      form.elements.auth.value = j.keys.auth;
      form.submit();
    } catch (err) {
      say('Notifications could not be turned on in this browser (' + err.name + ').');
    }
  });
  // The worker also serves pages already open: register it on this page.
  navigator.serviceWorker.register('/sw.js', { scope: '/' }).catch(() => {});
})();
