// phigate service worker (issue 10.3). It shows the PHI-free "a secure
// message is waiting" push and opens the portal when it is tapped. It
// caches nothing and answers no fetch: portal pages hold PHI and must
// never be kept on the device.
'use strict';

self.addEventListener('install', () => self.skipWaiting());
self.addEventListener('activate', (event) => event.waitUntil(self.clients.claim()));

// Only the portal's own pages are opened from a notification.
function portalURL(u) {
  try {
    const url = new URL(u, self.location.origin);
    if (url.origin === self.location.origin) return url.href;
  } catch (e) { /* fall through */ }
  return new URL('/inbox', self.location.origin).href;
}

self.addEventListener('push', (event) => {
  let data = {};
  try { data = event.data ? event.data.json() : {}; } catch (e) { data = {}; }
  const title = data.title || 'Secure message';
  const options = {
    body: data.body || 'You have a new secure message. Sign in to the portal to read it.',
    icon: '/icons/icon-192.png',
    tag: 'secure-message', // one notification, however many pushes
    renotify: true,
    data: { url: portalURL(data.url || '/inbox') },
  };
  event.waitUntil(self.registration.showNotification(title, options).then(() =>
    // Open portal pages may show that something arrived (and tests see
    // that the handler ran).
    self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then((list) => {
      for (const c of list) c.postMessage({ type: 'push', title });
    })));
});

self.addEventListener('notificationclick', (event) => {
  event.notification.close();
  const url = portalURL(event.notification.data && event.notification.data.url);
  event.waitUntil(self.clients.matchAll({ type: 'window', includeUncontrolled: true }).then((list) => {
    for (const c of list) {
      if (new URL(c.url).origin === self.location.origin && 'focus' in c) {
        return c.focus().then((w) => (w && 'navigate' in w ? w.navigate(url) : w));
      }
    }
    return self.clients.openWindow(url);
  }));
});
