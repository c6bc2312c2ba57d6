// Reload the fleet matrix every few seconds, with the page's own filters: the server
// renders the fragment (/ui?...&partial=1), this only swaps it in.  No framework.
(function () {
  "use strict";
  var matrix = document.getElementById("matrix");
  if (!matrix) {
    return;
  }
  var toggle = document.getElementById("autorefresh");
  var updated = document.getElementById("updated");
  var every = Math.max(1, parseInt(matrix.getAttribute("data-refresh"), 10) || 5) * 1000;
  var busy = false;

  function fragmentUrl() {
    var params = new URLSearchParams(window.location.search);
    params.set("partial", "1");
    return window.location.pathname + "?" + params.toString();
  }

  function reload() {
    if (busy || (toggle && !toggle.checked) || document.visibilityState === "hidden") {
      return;
    }
    busy = true;
    fetch(fragmentUrl(), {credentials: "same-origin", headers: {"Accept": "text/html"}})
      .then(function (response) {
        if (!response.ok) {
          throw new Error("HTTP " + response.status);
        }
        return response.text();
      })
      .then(function (html) {
        matrix.innerHTML = html;
        var summary = document.getElementById("summary");
        if (updated && summary) {
          updated.textContent = summary.getAttribute("data-updated");
        }
        matrix.classList.remove("stale");
      })
      .catch(function (error) {
        matrix.classList.add("stale");
        if (updated) {
          updated.textContent = "refresh failed (" + error.message + ")";
        }
      })
      .finally(function () {
        busy = false;
      });
  }

  window.setInterval(reload, every);
})();
