// Starts the vendored Swagger UI on the served OpenAPI document. A file, not an inline
// script: the page's Content-Security-Policy allows scripts from this server only.
"use strict";
(function () {

  // Swagger UI's own filter matches tag names only; this one also matches an operation's
  // path, summary, description and operation id, so typing "PATCH" or "image" finds it.
  function SearchEverything(system) {
    return {
      fn: {
        opsFilter: function (taggedOps, phrase) {
          var wanted = String(phrase || "").toLowerCase();
          if (!wanted) return taggedOps;
          return taggedOps
            .map(function (tag, name) {
              var tagHit = String(name).toLowerCase().indexOf(wanted) !== -1;
              return tag.set(
                "operations",
                tag.get("operations").filter(function (op) {
                  if (tagHit) return true;
                  var o = op.get("operation");
                  var text = [op.get("path"), op.get("method"), o.get("summary"), o.get("description"), o.get("operationId")]
                    .join(" ")
                    .toLowerCase();
                  return text.indexOf(wanted) !== -1;
                })
              );
            })
            .filter(function (tag) {
              return tag.get("operations").size > 0;
            });
        },
      },
    };
  }

  // One Swagger UI per document on the page: the API's, and the admin API's in a section of
  // its own (only when the server has an admin token).
  ["reference", "admin-reference"].forEach(function (id) {
    var root = document.getElementById(id);
    if (!root) return;
    window.SwaggerUIBundle({
      url: new URL(root.getAttribute("data-spec"), document.baseURI).href,
      domNode: root,
      deepLinking: id === "reference",
      filter: true,
      docExpansion: "list",
      plugins: [SearchEverything],
      presets: [window.SwaggerUIBundle.presets.apis],
      layout: "BaseLayout",
      onComplete: function () {
        var box = root.querySelector("input.operation-filter-input");
        if (box) box.setAttribute("placeholder", "Search paths, methods, summaries, tags");
      },
    });
  });
})();
