// Swagger UI's OAuth 2 redirect page (swagger-ui's oauth2-redirect.html, Apache-2.0, as FastAPI
// serves it), as a file: the page runs no inline script. It hands the authorization server's
// answer back to the /docs window that opened it, and closes.
"use strict";

function run() {
  if (!window.opener || !window.opener.swaggerUIRedirectOauth2) {
    document.getElementById("status").textContent =
      "This page completes a sign-in started from the API docs (/docs); open those instead.";
    return;
  }
  const oauth2 = window.opener.swaggerUIRedirectOauth2;
  const sentState = oauth2.state;
  const redirectUrl = oauth2.redirectUrl;
  let qp;

  if (/code|token|error/.test(window.location.hash)) {
    qp = window.location.hash.substring(1).replace("?", "&");
  } else {
    qp = window.location.search.substring(1);
  }
  const params = {};
  for (const [key, value] of new URLSearchParams(qp)) {
    params[key] = value;
  }
  const isValid = params.state === sentState;
  const flow = oauth2.auth.schema.get("flow");

  if (
    (flow === "accessCode" || flow === "authorizationCode" || flow === "authorization_code") &&
    !oauth2.auth.code
  ) {
    if (!isValid) {
      oauth2.errCb({
        authId: oauth2.auth.name,
        source: "auth",
        level: "warning",
        message:
          "Authorization may be unsafe, passed state was changed in server. " +
          "The passed state wasn't returned from auth server.",
      });
    }
    if (params.code) {
      delete oauth2.state;
      oauth2.auth.code = params.code;
      oauth2.callback({ auth: oauth2.auth, redirectUrl: redirectUrl });
    } else {
      let message;
      if (params.error) {
        message =
          "[" + params.error + "]: " +
          (params.error_description
            ? params.error_description + ". "
            : "no accessCode received from the server. ") +
          (params.error_uri ? "More info: " + params.error_uri : "");
      }
      oauth2.errCb({
        authId: oauth2.auth.name,
        source: "auth",
        level: "error",
        message: message || "[Authorization failed]: no accessCode received from the server.",
      });
    }
  } else {
    oauth2.callback({ auth: oauth2.auth, token: params, isValid: isValid, redirectUrl: redirectUrl });
  }
  window.close();
}

if (document.readyState !== "loading") {
  run();
} else {
  document.addEventListener("DOMContentLoaded", run);
}
