// The enrol page (templates/enrol.html): choose or drop photos and folders, then send them a few at a
// time (data-batch files per request, within the server's body cap), one request after another, to the
// page's enrol route, showing progress and one result row per file. No library, no build step.
(function () {
  "use strict";
  const form = document.getElementById("enrol-form");
  if (!form) return;
  const action = form.dataset.action;
  const batchFiles = Math.max(1, parseInt(form.dataset.batch, 10) || 10);
  const maxBody = parseInt(form.dataset.maxBody, 10) || 50 * 1024 * 1024;
  const maxImage = parseInt(form.dataset.maxImage, 10) || maxBody;
  const room = Math.max(64 * 1024, maxBody - 256 * 1024); // the form fields and multipart framing
  const $ = (id) => document.getElementById(id);
  const drop = $("drop"), chosenText = $("chosen"), start = $("enrol-start"), formError = $("form-error");
  const card = $("progress-card"), bar = $("progress"), barText = $("progress-text");
  const batchError = $("batch-error"), rows = document.querySelector("#results tbody");
  let chosen = []; // [{file, path}]: path is the file's path relative to what was chosen or dropped

  const mb = (bytes) => bytes < 1024 * 1024 ? Math.ceil(bytes / 1024) + " kB" : (bytes / 1024 / 1024).toFixed(1) + " MB";
  const folderOf = (path) => { const parts = path.split("/").filter(Boolean); return parts.length > 1 ? parts[parts.length - 2] : ""; };
  const mode = () => form.querySelector("input[name=mode]:checked").value;

  function describe() {
    if (!chosen.length) { chosenText.textContent = "No photos chosen yet."; return; }
    const folders = new Set(chosen.map((c) => folderOf(c.path)).filter(Boolean));
    const bytes = chosen.reduce((sum, c) => sum + c.file.size, 0);
    let text = `${chosen.length} file${chosen.length === 1 ? "" : "s"} chosen (${mb(bytes)})`;
    if (folders.size) text += ` in ${folders.size} folder${folders.size === 1 ? "" : "s"}`;
    if (mode() === "folders") text += folders.size ? `: ${folders.size} people, named after their folders` : ": no folders, so no names";
    chosenText.textContent = text + ".";
  }
  function choose(list) {
    chosen = list.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
    formError.hidden = true;
    describe();
  }
  function syncMode() {
    const one = mode() === "subject";
    $("subject-field").hidden = !one;
    form.elements.subject.required = one;
    describe();
  }
  form.querySelectorAll("input[name=mode]").forEach((r) => r.addEventListener("change", syncMode));
  syncMode();

  $("pick-files").addEventListener("change", (e) => choose([...e.target.files].map((f) => ({ file: f, path: f.name }))));
  $("pick-folder").addEventListener("change", (e) => choose([...e.target.files].map((f) => ({ file: f, path: f.webkitRelativePath || f.name }))));

  // Drag and drop, folders included (walked through the entries API).
  async function walk(entry, prefix, out) {
    if (entry.isFile) {
      const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
      out.push({ file, path: prefix + file.name });
    } else if (entry.isDirectory) {
      const reader = entry.createReader();
      for (;;) {
        const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
        if (!batch.length) break;
        for (const child of batch) await walk(child, prefix + entry.name + "/", out);
      }
    }
  }
  ["dragenter", "dragover"].forEach((t) => drop.addEventListener(t, (e) => { e.preventDefault(); drop.classList.add("over"); }));
  ["dragleave", "drop"].forEach((t) => drop.addEventListener(t, () => drop.classList.remove("over")));
  drop.addEventListener("drop", async (e) => {
    e.preventDefault();
    const entries = [...(e.dataTransfer.items || [])].map((i) => i.webkitGetAsEntry && i.webkitGetAsEntry()).filter(Boolean);
    if (!entries.length) { choose([...e.dataTransfer.files].map((f) => ({ file: f, path: f.name }))); return; }
    const out = [];
    for (const entry of entries) await walk(entry, "", out);
    choose(out);
  });

  // Results and progress.
  $("only-refused").addEventListener("change", (e) => $("results").classList.toggle("only-refused", e.target.checked));
  const counts = { enrolled: 0, duplicate: 0, refused: 0 };
  let done = 0;
  function cell(row, label, text) {
    const td = row.insertCell();
    td.dataset.label = label;
    td.textContent = text;
    return td;
  }
  function addRow(r) {
    const row = rows.insertRow();
    row.className = "result " + r.status;
    cell(row, "File", r.file);
    cell(row, "Person", r.subject || "");
    const status = cell(row, "Result", "");
    const badge = document.createElement("span");
    badge.className = "badge " + ({ enrolled: "confirmed", refused: "rejected" }[r.status] || r.status);
    badge.textContent = r.status === "enrolled" && r.faces > 1 ? `enrolled (${r.faces} faces)` : r.status;
    status.appendChild(badge);
    cell(row, "Why", r.reason || "");
    counts[r.status] = (counts[r.status] || 0) + 1;
  }
  function showProgress(total, note) {
    bar.max = Math.max(1, total);
    bar.value = done;
    barText.textContent = `${done} of ${total} files · ${counts.enrolled} enrolled · ${counts.duplicate} duplicates · ` +
      `${counts.refused} refused` + (note ? ` · ${note}` : "");
  }

  // Batches: at most batchFiles files and `room` bytes each; a file too large for the server is refused here.
  function batches(list) {
    const out = [], early = [];
    let current = [], bytes = 0;
    for (const c of list) {
      if (c.file.size > maxImage || c.file.size > room) {
        early.push({ file: c.path, subject: mode() === "folders" ? folderOf(c.path) : form.elements.subject.value,
                     status: "refused", faces: 0,
                     reason: `too large: ${mb(c.file.size)}, the limit is ${mb(Math.min(maxImage, room))}` });
        continue;
      }
      if (current.length && (current.length >= batchFiles || bytes + c.file.size > room)) { out.push(current); current = []; bytes = 0; }
      current.push(c);
      bytes += c.file.size;
    }
    if (current.length) out.push(current);
    return { out, early };
  }

  const pause = (seconds) => new Promise((resolve) => setTimeout(resolve, seconds * 1000));
  async function send(batch, fields) {
    const body = new FormData();
    for (const [k, v] of fields) body.append(k, v);
    for (const c of batch) { body.append("images", c.file, c.file.name); body.append("paths", c.path); }
    for (let attempt = 1; ; attempt++) {
      let response;
      try {
        response = await fetch(action, { method: "POST", body, headers: { Accept: "application/json" }, credentials: "same-origin" });
      } catch (err) {
        if (attempt >= 4) throw new Error("the server could not be reached (" + err.message + ")");
        await pause(2 * attempt);
        continue;
      }
      if (response.status === 429 && attempt < 20) { // rate limit: wait as told, then send the same batch again
        await pause(parseInt(response.headers.get("Retry-After"), 10) || 5);
        continue;
      }
      const json = (response.headers.get("Content-Type") || "").includes("json") ? await response.json() : null;
      if (response.redirected || !json) {
        throw new Error(response.redirected ? "your session has ended: sign in again, then press Enrol again " +
          "(photos already enrolled are skipped as duplicates)" : response.status === 413 ?
          "the batch is larger than the server accepts (FACELEDGER_MAX_UPLOAD_BYTES)" :
          `the server refused the batch (${response.status})`);
      }
      if (!response.ok) throw new Error(json.detail || `the server refused the batch (${response.status})`);
      return json;
    }
  }

  let sending = false;
  window.addEventListener("beforeunload", (e) => { if (sending) { e.preventDefault(); e.returnValue = ""; } });

  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    formError.hidden = true;
    if (!form.reportValidity()) return;
    if (!chosen.length) { formError.textContent = "Choose or drop the photos to enrol first."; formError.hidden = false; return; }
    const fields = [...new FormData(form).entries()].filter(([, v]) => typeof v === "string");
    const { out, early } = batches(chosen);
    const total = chosen.length;
    start.disabled = true;
    sending = true;
    card.hidden = false;
    batchError.hidden = true;
    $("done-links").hidden = true;
    rows.replaceChildren();
    Object.keys(counts).forEach((k) => { counts[k] = 0; });
    done = 0;
    early.forEach(addRow);
    done += early.length;
    showProgress(total, "sending");
    try {
      for (const batch of out) {
        const answer = await send(batch, fields);
        answer.results.forEach(addRow);
        done += batch.length;
        showProgress(total, done < total ? "sending" : "");
      }
      showProgress(total, "done");
      card.classList.add("finished");
    } catch (err) {
      batchError.textContent = "Stopped: " + err.message;
      batchError.hidden = false;
      showProgress(total, "stopped");
    } finally {
      sending = false;
      start.disabled = false;
      $("done-links").hidden = false;
    }
  });
})();
