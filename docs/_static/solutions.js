// Fold the course's solutions: notebook cells tagged "solution" (hidden in Jupyter too). MyST-NB
// gives each such cell the classes "cell tag_solution" (docs/_ext/xposim_docs.py does it for
// markdown cells); consecutive ones go into one closed <details>.
document.addEventListener("DOMContentLoaded", function () {
  document.querySelectorAll("div.cell.tag_solution").forEach(function (cell) {
    var previous = cell.previousElementSibling;
    if (previous && previous.matches("details.xposim-solution")) {
      previous.appendChild(cell);
      return;
    }
    var details = document.createElement("details");
    details.className = "xposim-solution";
    var summary = document.createElement("summary");
    summary.textContent = "Solution";
    details.appendChild(summary);
    cell.parentNode.insertBefore(details, cell);
    details.appendChild(cell);
  });
});
