// Starts the vendored Swagger UI on the served OpenAPI document. A file, not an inline
// script: the page's Content-Security-Policy allows scripts from this server only.
"use strict";
(function () {
  var root = document.getElementById("reference");
  var spec = new URL(root.getAttribute("data-spec"), document.baseURI).href;

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

  window.SwaggerUIBundle({
    url: spec,
    domNode: root,
    deepLinking: true,
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
})();
