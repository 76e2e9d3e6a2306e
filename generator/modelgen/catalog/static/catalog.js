// The model catalog's index: filters and sortable columns. The page is whole without this script;
// it only hides rows and reorders them. Values are read and written as text, never as markup.
(function () {
  "use strict";
  var table = document.getElementById("models");
  var form = document.getElementById("filters");
  if (!table || !form) return;
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);

  function filter() {
    var owner = form.elements.owner.value;
    var task = form.elements.task.value;
    var runtime = form.elements.runtime.value;
    var query = form.elements.q.value.trim().toLowerCase();
    var shown = 0;
    rows.forEach(function (row) {
      var keep = (!owner || row.dataset.owner === owner) &&
        (!task || row.dataset.task === task) &&
        (!runtime || row.dataset.runtime === runtime) &&
        (!query || row.dataset.text.indexOf(query) >= 0);
      row.hidden = !keep;
      if (keep) shown += 1;
    });
    form.elements.count.value = shown + " of " + rows.length + " models";
  }

  function key(row, column, type) {
    var cell = row.cells[column];
    var text = cell.hasAttribute("data-sort") ? cell.getAttribute("data-sort") : cell.textContent.trim();
    if (type !== "number") return text.toLowerCase();
    return text === "" ? null : parseFloat(text);
  }

  function sort(header, column, type) {
    var descending = header.getAttribute("aria-sort") === "ascending";
    Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th) { th.removeAttribute("aria-sort"); });
    header.setAttribute("aria-sort", descending ? "descending" : "ascending");
    rows.sort(function (a, b) {
      var x = key(a, column, type), y = key(b, column, type);
      if (x === y) return 0;
      if (x === null) return 1;  // rows without a value last, either way
      if (y === null) return -1;
      return (x < y ? -1 : 1) * (descending ? -1 : 1);
    });
    rows.forEach(function (row) { body.appendChild(row); });
  }

  Array.prototype.forEach.call(table.tHead.rows[0].cells, function (th, column) {
    var type = th.getAttribute("data-type");
    if (!type) return;
    var button = document.createElement("button");
    button.type = "button";
    button.textContent = th.textContent;
    button.addEventListener("click", function () { sort(th, column, type); });
    th.textContent = "";
    th.appendChild(button);
  });
  form.addEventListener("input", filter);
  form.addEventListener("submit", function (event) { event.preventDefault(); });
  form.hidden = false;
  filter();
})();
