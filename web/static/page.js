// Small helpers every portal page loads (issue 13.7). Reading works without
// them; they make two things fit a phone:
//  - tables become one card per row on a narrow screen (portal.css); each
//    cell is labelled with its column's heading (data-label), and the table
//    keeps its row/cell roles for screen readers, which some browsers drop
//    when a table is displayed as blocks;
//  - the sanitised HTML message frame grows to its content's height, so the
//    page scrolls, not a box inside it.
(function () {
  "use strict";

  function label(table) {
    var heads = Array.prototype.map.call(table.querySelectorAll("thead th"), function (th) {
      return th.textContent.trim();
    });
    if (!heads.length) { return; }
    table.setAttribute("role", "table");
    Array.prototype.forEach.call(table.querySelectorAll("thead, tbody"), function (g) { g.setAttribute("role", "rowgroup"); });
    Array.prototype.forEach.call(table.querySelectorAll("tr"), function (tr) {
      tr.setAttribute("role", "row");
      Array.prototype.forEach.call(tr.children, function (c, i) {
        if (c.tagName === "TH") {
          c.setAttribute("role", c.getAttribute("scope") === "row" ? "rowheader" : "columnheader");
          return;
        }
        c.setAttribute("role", "cell");
        if (heads[i] && !c.hasAttribute("data-label")) { c.setAttribute("data-label", heads[i]); }
      });
    });
  }

  function labelAll(root) {
    Array.prototype.forEach.call(root.querySelectorAll("table"), label);
  }

  // Long addresses and links wrap where a reader expects: after "@",
  // before "." and after "-", "/", "?", "&", "=" (a <wbr>, so nothing is
  // added to what is copied), not at any letter.
  var WRAP = ".addr, .headers dd, .inbox .from, .facts dd, td, .notice, .alert, .body.text";
  var BREAK = /([@\-/?&=_])|(\.)/g;

  function wrapText(node) {
    var t = node.nodeValue;
    if (t.length < 16 || !/\S{16,}/.test(t)) { return; }
    var frag = document.createDocumentFragment();
    t.split(/(\s+)/).forEach(function (word) {
      if (word.length < 16 || /\s/.test(word)) { frag.appendChild(document.createTextNode(word)); return; }
      var last = 0;
      word.replace(BREAK, function (m, after, before, at) {
        var cut = before ? at : at + 1;
        if (cut > last && cut < word.length) {
          frag.appendChild(document.createTextNode(word.slice(last, cut)));
          frag.appendChild(document.createElement("wbr"));
          last = cut;
        }
        return m;
      });
      frag.appendChild(document.createTextNode(word.slice(last)));
    });
    node.parentNode.replaceChild(frag, node);
  }

  function wrapAll(root) {
    var els = [];
    if (root.matches && root.matches(WRAP)) { els.push(root); }
    Array.prototype.push.apply(els, root.querySelectorAll(WRAP));
    els.forEach(function (el) {
      var w = document.createTreeWalker(el, NodeFilter.SHOW_TEXT, null), n, texts = [];
      while ((n = w.nextNode())) {
        if (!n.parentElement.closest("code, pre, textarea, script, style")) { texts.push(n); }
      }
      texts.forEach(wrapText);
    });
  }

  function fit(frame) {
    var d;
    try { d = frame.contentDocument; } catch (e) { return; }
    if (!d || !d.documentElement) { return; }
    // The content's own height (the root element's box, which, unlike
    // scrollHeight, does not stay at a taller frame's height), plus the
    // frame's border.
    frame.style.height = (Math.ceil(d.documentElement.getBoundingClientRect().height) + 2) + "px";
  }

  function fitAll() {
    Array.prototype.forEach.call(document.querySelectorAll("iframe.body"), fit);
  }

  document.addEventListener("DOMContentLoaded", function () {
    labelAll(document);
    wrapAll(document.getElementById("main") || document.body);
    // live.js redraws the Sent page's table: label the new one too.
    var main = document.getElementById("main");
    if (main && "MutationObserver" in window) {
      new MutationObserver(function (list) {
        list.forEach(function (m) {
          Array.prototype.forEach.call(m.addedNodes, function (n) {
            if (n.nodeType !== 1) { return; }
            if (n.tagName === "TABLE") { label(n); } else { labelAll(n); }
            wrapAll(n);
          });
        });
      }).observe(main, { childList: true, subtree: true });
    }
    Array.prototype.forEach.call(document.querySelectorAll("iframe.body"), function (f) {
      f.addEventListener("load", function () { fit(f); });
      fit(f);
    });
  });
  // A phone turned sideways re-flows the message: measure again.
  var pending = null;
  window.addEventListener("resize", function () {
    if (pending) { clearTimeout(pending); }
    pending = setTimeout(fitAll, 100);
  });
})();
