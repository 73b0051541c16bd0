// The live stream: ask /live.json every few seconds and redraw the two tables
// (textContent only: nothing from the store is ever parsed as HTML).
(function () {
  var state = document.getElementById("live-state");
  if (!state) { return; }
  var every = 1000 * Number(state.getAttribute("data-every") || "3");
  function fill(name, table) {
    var body = document.querySelector("#table-" + name + " tbody");
    if (!body) { return; }
    while (body.firstChild) { body.removeChild(body.firstChild); }
    table.rows.forEach(function (row) {
      var tr = document.createElement("tr");
      row.forEach(function (cell) {
        var td = document.createElement("td");
        td.textContent = cell === null ? "-" : String(cell);
        if (typeof cell === "number") { td.className = "n"; }
        tr.appendChild(td);
      });
      body.appendChild(tr);
    });
    if (!table.rows.length) {
      var tr = document.createElement("tr"), td = document.createElement("td");
      td.colSpan = table.head.length; td.className = "muted"; td.textContent = "none";
      tr.appendChild(td); body.appendChild(tr);
    }
  }
  function tick() {
    fetch("/live.json", { credentials: "same-origin", cache: "no-store" })
      .then(function (answer) {
        if (answer.status === 401) { throw new Error("the session ended: log in again"); }
        if (!answer.ok) { throw new Error("the server answered " + answer.status); }
        return answer.json();
      })
      .then(function (data) {
        fill("events", data.events);
        fill("sends", data.sends);
        document.getElementById("live-at").textContent = data.at;
        state.textContent = "live";
        state.setAttribute("data-updates", String(Number(state.getAttribute("data-updates") || "0") + 1));
        setTimeout(tick, every);
      }, function (error) {
        state.textContent = "paused: " + error.message;
        setTimeout(tick, every * 4);
      });
  }
  setTimeout(tick, every);
})();
