// Starts ReDoc on /redoc, on the schema the page's JSON block (#redoc-config) names, so that the
// page itself runs no inline script (its Content-Security-Policy allows none).
"use strict";

(function () {
  const config = JSON.parse(document.getElementById("redoc-config").textContent);
  window.Redoc.init(config.specUrl, config.options, document.getElementById("redoc"));
})();
