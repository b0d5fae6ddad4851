// The dashboard's live parts, in plain JS (no build step). Two behaviours, chosen by attributes:
//
//   <form data-live="/url" data-live-target="id">  as the visitor types (debounced), GET /url with
//       the form's fields and put the returned HTML fragment into #id. The server renders the
//       fragment with Jinja, so every name and body in it is already escaped.
//   <div data-poll="/url" data-every="2000">  fetch /url every N ms and replace the element's
//       contents, until the fragment carries an element with data-final.
(function () {
  "use strict";
  var DEBOUNCE_MS = 300;

  function fetchInto(url, target) {
    return fetch(url, { credentials: "same-origin", headers: { "X-Requested-With": "fetch" } })
      .then(function (response) { return response.text(); })
      .then(function (html) { target.innerHTML = html; return target; });
  }

  function live(form) {
    var target = document.getElementById(form.dataset.liveTarget);
    if (!target) { return; }
    var timer = null;
    var latest = 0;
    function update() {
      var ticket = ++latest;
      var query = new URLSearchParams(new FormData(form));
      query.delete("csrf_token");
      fetch(form.dataset.live + "?" + query.toString(), { credentials: "same-origin" })
        .then(function (response) { return response.text(); })
        .then(function (html) { if (ticket === latest) { target.innerHTML = html; } });
    }
    form.addEventListener("input", function () {
      clearTimeout(timer);
      timer = setTimeout(update, DEBOUNCE_MS);
    });
    if (form.dataset.liveNow !== undefined) { update(); }
  }

  function poll(element) {
    var every = parseInt(element.dataset.every || "2000", 10);
    function tick() {
      fetchInto(element.dataset.poll, element).then(function () {
        if (!element.querySelector("[data-final]")) { setTimeout(tick, every); }
      }, function () { setTimeout(tick, every * 2); });
    }
    if (!element.querySelector("[data-final]")) { setTimeout(tick, every); }
  }

  document.addEventListener("DOMContentLoaded", function () {
    document.querySelectorAll("form[data-live]").forEach(live);
    document.querySelectorAll("[data-poll]").forEach(poll);
    document.querySelectorAll("form[data-confirm]").forEach(function (form) {
      form.addEventListener("submit", function (event) {
        if (!window.confirm(form.dataset.confirm)) { event.preventDefault(); }
      });
    });
  });
})();
