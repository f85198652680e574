// Scan mode of the search form: the camera's frames go to the server a few times a second
// (POST /api/v1/scans/{id}/frames, a JPEG at most 640 px wide); the server follows the face, answers in
// plain words what would make the shot better, and searches once, with the best shots, when it has seen
// enough good frames; the page then opens the result. No library, no inline script (CSP: self only).
(function () {
  const startButton = document.getElementById("scan-start");
  const form = document.getElementById("search-form");
  if (!startButton || !form) return;
  const box = document.getElementById("scan");
  const video = document.getElementById("scan-video");
  const feedback = document.getElementById("scan-feedback");
  const bar = document.getElementById("scan-bar");
  const progress = document.getElementById("scan-progress");
  const note = document.getElementById("scan-note");
  const faceBox = document.getElementById("scan-box");
  const csrf = form.querySelector("input[name=csrf]").value;
  const instructions = note.textContent;
  const FRAME_SIDE = 640;
  const FRAME_EVERY_MS = 300;
  let stream = null;
  let scanId = null;
  let running = false;

  if (!(navigator.mediaDevices && navigator.mediaDevices.getUserMedia)) {
    startButton.hidden = true;  // no camera API (or not a secure origin): choosing a file still works
    return;
  }

  function say(text, kind) {
    feedback.textContent = text;
    feedback.className = "scan-feedback" + (kind ? " " + kind : "");
    feedback.dataset.code = kind || "";
  }
  function setProgress(value) {
    const percent = Math.round(Math.max(0, Math.min(1, value)) * 100);
    progress.style.width = percent + "%";
    bar.setAttribute("aria-valuenow", String(percent));
  }
  function showBox(fraction) {
    if (!fraction || !video.clientWidth) { faceBox.hidden = true; return; }
    const w = video.clientWidth, h = video.clientHeight;
    faceBox.style.left = fraction[0] * w + "px";
    faceBox.style.top = fraction[1] * h + "px";
    faceBox.style.width = (fraction[2] - fraction[0]) * w + "px";
    faceBox.style.height = (fraction[3] - fraction[1]) * h + "px";
    faceBox.hidden = false;
  }
  function stopCamera() {
    running = false;
    if (stream) stream.getTracks().forEach((t) => t.stop());
    stream = null;
  }
  async function problem(response) {
    try {
      const body = await response.json();
      return body.detail || response.statusText;
    } catch (err) {
      return response.statusText || "the server did not answer";
    }
  }
  function post(url, body, type) {
    return fetch(url, { method: "POST", body: body, credentials: "same-origin",
                        headers: { "Content-Type": type, "X-CSRF-Token": csrf, "Accept": "application/json" } });
  }
  function frameBlob() {
    const scale = Math.min(1, FRAME_SIDE / Math.max(video.videoWidth, video.videoHeight));
    const canvas = document.createElement("canvas");
    canvas.width = Math.round(video.videoWidth * scale);
    canvas.height = Math.round(video.videoHeight * scale);
    canvas.getContext("2d").drawImage(video, 0, 0, canvas.width, canvas.height);
    return new Promise((resolve) => canvas.toBlob(resolve, "image/jpeg", 0.85));
  }
  const wait = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  async function loop() {
    while (running) {
      const began = performance.now();
      const blob = await frameBlob();
      if (!running) return;
      if (!blob) { await wait(FRAME_EVERY_MS); continue; }
      let response;
      try {
        response = await post("/api/v1/scans/" + scanId + "/frames", blob, "image/jpeg");
      } catch (err) {
        say("The server cannot be reached: " + err.message, "error");
        stopCamera();
        return;
      }
      if (response.status === 429) {  // faster than the scan (or this user's rate limit) allows: wait as told
        const seconds = parseFloat(response.headers.get("Retry-After") || "1");
        if (seconds > 2) say("Too many requests: waiting " + Math.ceil(seconds) + " s", "hold_still");
        await wait(Math.max(FRAME_EVERY_MS, seconds * 1000));
        continue;
      }
      if (!response.ok) {
        say(await problem(response), "error");
        stopCamera();
        cancel();
        return;
      }
      const answer = await response.json();
      if (answer.feedback) {
        say(answer.feedback.message, answer.feedback.code);
        setProgress(answer.feedback.progress);
        showBox(answer.feedback.box);
        note.textContent = answer.feedback.note || instructions;
      }
      if (answer.status === "searched") {
        setProgress(1);
        say(answer.decision === "match" ? "Searched: opening the candidates" : "Searched: opening the answer",
            "done");
        scanId = null;
        stopCamera();
        window.location.assign(answer.result_url);
        return;
      }
      if (answer.status === "ended") {  // the server has ended the scan: nothing to cancel
        say(answer.reason, "error");
        scanId = null;
        stopCamera();
        return;
      }
      await wait(Math.max(0, FRAME_EVERY_MS - (performance.now() - began)));
    }
  }

  async function start() {
    const needed = ["gallery", "purpose", "case"].map((n) => form.elements[n]);
    for (const field of needed) {
      if (field && !field.checkValidity()) { field.reportValidity(); return; }
    }
    const snap = document.getElementById("camera-stop");
    if (snap && !document.getElementById("camera").hidden) snap.click();
    box.hidden = false;
    setProgress(0);
    showBox(null);
    say("Starting the camera…", "");
    try {  // the camera first: the scan's time starts only once there are frames to send
      stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: "environment" }, audio: false });
    } catch (err) {
      say("The camera is not available: " + err.message, "error");
      return;
    }
    video.srcObject = stream;
    await video.play();
    const response = await post("/api/v1/scans", JSON.stringify({
      gallery: form.elements.gallery.value, purpose: form.elements.purpose.value,
      case: form.elements.case.value, authorisation: form.elements.authorisation.value || null,
      top_k: parseInt(form.elements.top_k.value || "10", 10) }), "application/json");
    if (!response.ok) { say(await problem(response), "error"); stopCamera(); return; }
    scanId = (await response.json()).scan;
    running = true;
    say("Point the camera at the person", "");
    loop();
  }

  function cancel() {  // end the scan on the server (its frames are dropped there); nothing to wait for
    if (!scanId) return;
    const id = scanId;
    scanId = null;
    fetch("/api/v1/scans/" + id, { method: "DELETE", credentials: "same-origin",
                                   headers: { "X-CSRF-Token": csrf } }).catch(() => {});
  }
  function stop() {
    stopCamera();
    cancel();
    box.hidden = true;
  }

  startButton.addEventListener("click", () => { if (!running) start(); });
  document.getElementById("scan-stop").addEventListener("click", stop);
  const snapStart = document.getElementById("camera-start");
  if (snapStart) snapStart.addEventListener("click", () => { if (running || scanId) stop(); });
})();
