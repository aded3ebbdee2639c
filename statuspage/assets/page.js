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

  function update(el, html) {
    var t = document.createElement("template");
    t.innerHTML = html;
    if (el.innerHTML === t.innerHTML) return;
    var next = Array.prototype.slice.call(t.content.children);
    var cur = Array.prototype.slice.call(el.children);
    var same = next.length === cur.length && next.every(function (n, i) {
      return n.id && n.id === cur[i].id;
    });
    if (!same) {
      el.replaceChildren(t.content);
      return;
    }
    next.forEach(function (n, i) {
      if (n.outerHTML !== cur[i].outerHTML) cur[i].replaceWith(n);
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
