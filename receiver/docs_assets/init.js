// Renders the API reference from /openapi.json (kept out of the page: the CSP has no
// 'unsafe-inline' for scripts).
window.addEventListener("load", function () {
  window.SwaggerUIBundle({ url: "/openapi.json", dom_id: "#reference", deepLinking: true });
});
