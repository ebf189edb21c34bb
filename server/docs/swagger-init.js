/* Starts Swagger UI on /api/docs (formerly an inline script of the page: see
   server/templates/swagger_ui.html). The spec URL and any OPENAPI_SWAGGER_UI_CONFIG come
   from data attributes of the container. */
window.addEventListener("load", function () {
  "use strict";
  var container = document.getElementById("swagger-ui-container");
  var config = { url: container.dataset.specUrl, dom_id: "#swagger-ui-container" };
  var extra = JSON.parse(container.dataset.config || "{}");
  Object.keys(extra).forEach(function (key) { config[key] = extra[key]; });
  window.ui = SwaggerUIBundle(config);
});
