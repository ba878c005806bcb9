// The upload page: drag-and-drop or picker, a size check before sending, and an XHR upload
// with a progress bar. Without JavaScript the form still posts normally.
(function () {
  "use strict";
  var form = document.getElementById("upload-form");
  if (!form) return;
  var input = document.getElementById("id_file");
  var zone = document.getElementById("dropzone");
  var chosen = document.getElementById("chosen-file");
  var progress = document.getElementById("upload-progress");
  var status = document.getElementById("upload-status");
  var errors = document.getElementById("upload-errors");
  var button = document.getElementById("upload-button");
  var maxBytes = parseInt(form.dataset.maxBytes, 10);

  function formatBytes(n) {
    var units = ["bytes", "KB", "MB", "GB"], i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return (i ? n.toFixed(1) : n) + " " + units[i];
  }
  function showError(message) {
    errors.textContent = "";
    var p = document.createElement("p");
    p.textContent = message;
    errors.appendChild(p);
  }
  function describe() {
    var file = input.files[0];
    chosen.textContent = file ? file.name + " (" + formatBytes(file.size) + ")" : "No file chosen";
    var name = document.getElementById("id_name");
    if (file && name && !name.value) name.value = file.name.replace(/\.[^.]+$/, "");
  }

  input.addEventListener("change", describe);
  ["dragenter", "dragover"].forEach(function (type) {
    zone.addEventListener(type, function (event) { event.preventDefault(); zone.classList.add("over"); });
  });
  ["dragleave", "drop"].forEach(function (type) {
    zone.addEventListener(type, function (event) { event.preventDefault(); zone.classList.remove("over"); });
  });
  zone.addEventListener("drop", function (event) {
    if (event.dataTransfer && event.dataTransfer.files.length) {
      input.files = event.dataTransfer.files;
      describe();
    }
  });

  form.addEventListener("submit", function (event) {
    event.preventDefault();
    var file = input.files[0];
    if (!file) { showError("Choose a file to upload."); return; }
    if (file.size > maxBytes) {
      showError("The file is " + formatBytes(file.size) + ", larger than this server's upload limit of " + formatBytes(maxBytes) + ".");
      return;
    }
    errors.textContent = "";
    var xhr = new XMLHttpRequest();
    xhr.open("POST", form.action || window.location.href);
    xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    xhr.responseType = "json";
    progress.hidden = false;
    progress.value = 0;
    button.disabled = true;
    xhr.upload.addEventListener("progress", function (e) {
      if (e.lengthComputable) {
        progress.value = Math.round(100 * e.loaded / e.total);
        status.textContent = "Uploading… " + formatBytes(e.loaded) + " of " + formatBytes(e.total);
      }
    });
    xhr.upload.addEventListener("load", function () { status.textContent = "Upload complete; saving…"; });
    xhr.addEventListener("load", function () {
      var body = xhr.response || {};
      if (xhr.status >= 200 && xhr.status < 300 && body.redirect) {
        window.location.assign(body.redirect);
        return;
      }
      button.disabled = false;
      progress.hidden = true;
      status.textContent = "";
      showError(body.detail || ("The upload failed (HTTP " + xhr.status + ")."));
    });
    xhr.addEventListener("error", function () {
      button.disabled = false;
      progress.hidden = true;
      status.textContent = "";
      showError("The upload was interrupted. Check the connection and the file's size, then try again.");
    });
    xhr.send(new FormData(form));
  });
})();
