// Small behaviours of the pages, from this static file (the pages carry no inline script or style):
// a face crop that cannot be shown becomes a plain "image not available" box, and "Back" links go back.
function faceMissing(img) {
  const box = document.createElement("div");
  box.className = img.className + " missing";
  box.textContent = "image not available";
  img.replaceWith(box);
}
document.addEventListener("error", (event) => {
  const img = event.target;
  if (img instanceof HTMLImageElement && img.hasAttribute("data-fallback")) faceMissing(img);
}, true);
// This script is deferred: an image may have failed before it ran.
document.querySelectorAll("img[data-fallback]").forEach((img) => {
  if (img.complete && img.naturalWidth === 0) faceMissing(img);
});
document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest("a.back-link");
  if (link && history.length > 1) { event.preventDefault(); history.back(); }
});

// Camera capture for the search form: getUserMedia -> <video> -> canvas -> JPEG blob -> the form's file
// input (so the form posts it like a chosen file). No build step, no library.
(function () {
  const start = document.getElementById("camera-start");
  const input = document.getElementById("photo-input");
  if (!start || !input) return;
  const box = document.getElementById("camera");
  const video = document.getElementById("camera-video");
  const preview = document.getElementById("photo-preview");
  let stream = null;

  function show(file) {
    if (!file) { preview.hidden = true; return; }
    preview.src = URL.createObjectURL(file);
    preview.hidden = false;
  }
  function stop() {
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
    box.hidden = true;
  }
  if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) {
    start.hidden = true;  // no camera API (or not a secure origin): choosing a file still works
  }
  input.addEventListener("change", () => show(input.files[0]));
  start.addEventListener("click", async () => {
    try {
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    } catch (err) {
      alert("The camera is not available: " + err.message);
      return;
    }
    video.srcObject = stream;
    box.hidden = false;
    await video.play();
  });
  document.getElementById("camera-stop").addEventListener("click", stop);
  document.getElementById("camera-shoot").addEventListener("click", () => {
    const canvas = document.createElement("canvas");
    canvas.width = video.videoWidth;
    canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((blob) => {
      const file = new File([blob], "camera.jpg", { type: "image/jpeg" });
      const list = new DataTransfer();
      list.items.add(file);
      input.files = list.files;
      show(file);
      stop();
    }, "image/jpeg", 0.92);
  });
})();
