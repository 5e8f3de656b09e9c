// Starts Swagger UI on /docs. Its settings come from the page's JSON block (#swagger-ui-config),
// so that the page itself runs no inline script (its Content-Security-Policy allows none).
"use strict";

(function () {
  const config = JSON.parse(document.getElementById("swagger-ui-config").textContent);
  config.oauth2RedirectUrl = window.location.origin + config.oauth2RedirectUrl;
  config.presets = [window.SwaggerUIBundle.presets.apis];
  window.ui = window.SwaggerUIBundle(config);
})();
