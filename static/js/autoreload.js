// Reloads the page every data-seconds seconds (the script tag's attribute), but not while someone is
// typing in one of its fields: a meta refresh would wipe what they typed.
(function () {
  "use strict";
  const seconds = Number((document.currentScript && document.currentScript.dataset.seconds) || 10);
  window.setInterval(() => {
    const typing = document.activeElement && document.activeElement.matches("input, select, textarea");
    if (!typing) window.location.reload();
  }, seconds * 1000);
})();
