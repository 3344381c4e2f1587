// The Quick Start page's script: asks the operator for the page's view every few seconds and
// updates the consent rows, the summary and the live region, so the page follows the consents
// without a reload. Served by the operator itself (the page's CSP allows no other script).
(function () {
  "use strict";
  var body = document.body;
  var stateUrl = body.getAttribute("data-state-url");
  var every = parseInt(body.getAttribute("data-poll-ms"), 10) || 3000;
  var delay = every;
  var announce = document.getElementById("announce");
  var summary = document.getElementById("summary");
  var overall = document.getElementById("overall");
  var progress = document.getElementById("progress");
  var wasReady = progress.classList.contains("ready");

  function say(text) {
    announce.textContent = text;
  }

  function rowFor(key) {
    var rows = document.querySelectorAll("li.consent");
    for (var i = 0; i < rows.length; i++) {
      if (rows[i].getAttribute("data-key") === key) {
        return rows[i];
      }
    }
    return null;
  }

  function update(view) {
    var rows = document.querySelectorAll("li.consent");
    if (rows.length !== view.consents.length) {
      window.location.reload();
      return;
    }
    var changes = [];
    view.consents.forEach(function (c) {
      var row = rowFor(c.key);
      if (!row) {
        window.location.reload();
        return;
      }
      if (row.getAttribute("data-state") !== c.state) {
        changes.push(c.title + ": " + c.label);
      }
      row.setAttribute("data-state", c.state);
      row.className = "consent state-" + c.state.toLowerCase();
      row.querySelector(".badge").textContent = c.label;
      var link = row.querySelector("a.button");
      if (c.url) {
        link.setAttribute("href", c.url);
        link.hidden = false;
      } else {
        link.removeAttribute("href");
        link.hidden = true;
      }
    });
    summary.textContent = view.summary;
    overall.textContent = view.ready ? "Ready" : "Waiting for consents";
    progress.className = "progress " + (view.ready ? "ready" : "waiting");
    if (view.ready && !wasReady) {
      changes.push("Ready. " + view.summary);
    }
    wasReady = view.ready;
    if (changes.length > 0) {
      say(changes.join(". "));
    }
  }

  function expired() {
    overall.textContent = "Link expired";
    summary.textContent =
      "This link is no longer valid. Ask your platform contact for a new Quick Start link.";
    progress.className = "progress expired";
  }

  function schedule() {
    window.setTimeout(poll, document.hidden ? Math.max(delay, 15000) : delay);
  }

  function poll() {
    fetch(stateUrl, {
      cache: "no-store",
      // The sign-in cookie, when sign-in is on; nothing is sent elsewhere.
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    })
      .then(function (response) {
        if (response.status === 404) {
          expired();
          return null;
        }
        if (response.status === 401) {
          // The sign-in ran out: the page itself leads through sign-in again.
          window.location.reload();
          return null;
        }
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.json();
      })
      .then(function (view) {
        if (view === null) {
          return;
        }
        update(view);
        delay = view.ready ? 30000 : every;
        schedule();
      })
      .catch(function () {
        delay = Math.min(delay * 2, 30000);
        schedule();
      });
  }

  schedule();
})();
