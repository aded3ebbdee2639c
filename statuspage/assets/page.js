// Live updates of the status page over server-sent events. Each event
// carries one section's HTML, rendered by the server with the page's
// filter; rows keep their element when unchanged, so focus stays put.
(function () {
  "use strict";
  var main = document.getElementById("main");
  var conn = document.getElementById("conn");
  if (!main || !conn || !window.EventSource) return;
  var sections = ["summary", "envs", "rollouts", "results", "applied", "deadletters"];

  function state(s, text) {
    if (conn.dataset.state === s && conn.textContent === text) return;
    conn.dataset.state = s;
    conn.textContent = text;
  }

  // update makes el's children those of html, keeping each row (an
  // element with an id) that did not change where it is.
  function update(el, html) {
    var t = document.createElement("template");
    t.innerHTML = html;
    if (el.innerHTML === t.innerHTML) return;
    var keep = {};
    Array.prototype.forEach.call(el.children, function (c) {
      if (c.id) keep[c.id] = c;
    });
    var next = Array.prototype.slice.call(t.content.children).map(function (n) {
      var old = n.id && keep[n.id];
      return old && old.outerHTML === n.outerHTML ? old : n;
    });
    if (next.some(function (n) { return !n.id; })) {
      el.replaceChildren.apply(el, next);
      return;
    }
    // Take out what goes first, so the rows that stay never move.
    Array.prototype.slice.call(el.children).forEach(function (c) {
      if (next.indexOf(c) < 0) c.remove();
    });
    next.forEach(function (n, i) {
      if (el.children[i] !== n) el.insertBefore(n, el.children[i] || null);
    });
  }

  function connect() {
    var es = new EventSource(main.dataset.events);
    es.onopen = function () { state("live", "Live: changes appear as they happen."); };
    es.onerror = function () {
      if (es.readyState === EventSource.CLOSED) {
        // The bridge refused the stream (signed out, too many pages):
        // try again in a while.
        state("lost", "Connection to the bridge lost. Retrying…");
        setTimeout(connect, 5000);
      } else {
        state("lost", "Connection to the bridge lost. Reconnecting…");
      }
    };
    sections.forEach(function (name) {
      es.addEventListener(name, function (e) {
        var el = document.getElementById(name);
        if (el) update(el, e.data);
      });
    });
  }
  state("connecting", "Connecting…");
  connect();
})();
