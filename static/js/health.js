// Shows a banner when the server is unhealthy: no worker, broker down, database down.
(function () {
  const script = document.currentScript;
  const banner = document.getElementById("health-banner");
  if (!script || !banner) return;
  const url = script.dataset.healthUrl;
  async function check() {
    try {
      const response = await fetch(url, { credentials: "same-origin" });
      const health = await response.json();
      if (health.ok) {
        banner.hidden = true;
      } else {
        banner.textContent = "Cupola needs attention: " + health.problems.join("; ");
        banner.hidden = false;
      }
    } catch (error) {
      banner.textContent = "The Cupola server is not answering.";
      banner.hidden = false;
    }
  }
  check();
  setInterval(check, 15000);
})();
