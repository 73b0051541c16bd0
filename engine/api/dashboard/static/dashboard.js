// Draw the journey's diagram (Mermaid, shipped with the package: no network needed),
// then mark the page as drawn so that tests and people know the counts are in.
(function () {
  var box = document.getElementById("diagram");
  if (!box || typeof mermaid === "undefined") { return; }
  mermaid.initialize({ startOnLoad: false, securityLevel: "strict", theme: "neutral" });
  mermaid.run({ nodes: [box] }).then(function () {
    box.setAttribute("data-drawn", "yes");
  }, function (error) {
    box.setAttribute("data-drawn", "failed");
    box.insertAdjacentText("afterend", "The diagram could not be drawn: " + error);
  });
})();
