// The receipt page: open the print dialog once on arrival from a quick sale, and again on
// "Cetak lagi" (a jammed printer, a cancelled dialog).
document.addEventListener("DOMContentLoaded", function () {
  var again = document.getElementById("print-again");
  if (again) {
    again.addEventListener("click", function () { window.print(); });
  }
  var receipt = document.getElementById("receipt");
  if (receipt && receipt.dataset.autoprint === "1") {
    window.addEventListener("load", function () { window.print(); });
  }
});
