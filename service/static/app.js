// GAN service page: vanilla JS, talks only to this server's JSON/image API.
"use strict";

(() => {
  // The API lives one level above /ui/ (works behind a path prefix too).
  const API = new URL("..", window.location.href);
  const KEY_STORAGE = "gan.apiKey";
  const $ = (selector) => document.querySelector(selector);

  const state = {
    models: [],
    defaultModel: null,
    nMax: 64,
    maxScoreImages: 64,
    apiKey: readStorage(KEY_STORAGE) || "",
    lastImages: [], // [{seed, png}] of the current grid
    walkUrl: null,
  };

  // --- the API ---------------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, body) {
      super(body && body.error ? body.error : `HTTP ${status}`);
      this.status = status;
      this.reason = body && body.reason ? body.reason : "http_error";
      this.field = body && body.field ? body.field : null;
    }
  }

  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    if (state.apiKey) headers.set("Authorization", `Bearer ${state.apiKey}`);
    let response;
    try {
      response = await fetch(new URL(path, API), { ...options, headers });
    } catch (err) {
      throw new ApiError(0, {
        error: `cannot reach the server (${err.message}); is it still running?`,
        reason: "network",
      });
    }
    if (!response.ok) {
      let body = null;
      try {
        body = await response.json();
      } catch (err) {
        body = { error: `HTTP ${response.status} ${response.statusText}`.trim() };
      }
      const error = new ApiError(response.status, body);
      if (response.status === 401) showAuth(error.message);
      throw error;
    }
    return response;
  }

  function postJson(path, body) {
    return api(path, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(body),
    });
  }

  // --- small helpers ---------------------------------------------------------------------------

  function readStorage(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (err) {
      return null;
    }
  }

  function writeStorage(key, value) {
    try {
      if (value === null) window.localStorage.removeItem(key);
      else window.localStorage.setItem(key, value);
    } catch (err) {
      /* storage disabled */
    }
  }

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs)) {
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function randomSeed() {
    const words = new Uint32Array(1);
    window.crypto.getRandomValues(words);
    return words[0];
  }

  // A number when the field holds one; otherwise what was typed, so the API names the problem.
  function numberOrRaw(input) {
    const raw = input.value.trim();
    if (raw === "") return null;
    const value = Number(raw);
    return Number.isFinite(value) ? value : raw;
  }

  function selectedModel() {
    const value = $("#model").value;
    return state.models.some((m) => m.name === value) ? value : undefined;
  }

  // The class picked for a class-conditional model, by index; undefined: each seed draws its own.
  function selectedClass() {
    const model = state.models.find((m) => m.name === $("#model").value);
    const value = $("#class").value;
    return model && model.classes && value !== "" ? Number(value) : undefined;
  }

  function withClass(body) {
    const klass = selectedClass();
    if (klass !== undefined) body.class = klass;
    return body;
  }

  // Class-conditional models get a class picker filled from GET /models; others hide it.
  function showClasses() {
    const model = state.models.find((m) => m.name === $("#model").value);
    const select = $("#class");
    const keep = select.value;
    select.textContent = "";
    select.append(el("option", { value: "", text: "any (from the seed)" }));
    const classes = (model && model.classes) || [];
    classes.forEach((name, i) => select.append(el("option", { value: String(i), text: `${i} · ${name}` })));
    select.value = keep !== "" && Number(keep) < classes.length ? keep : "";
    $("#class-field").hidden = classes.length === 0;
  }

  function setBusy(button, busy, label) {
    if (!button.dataset.label) button.dataset.label = button.textContent;
    button.disabled = busy;
    button.classList.toggle("busy", busy);
    button.textContent = busy ? label : button.dataset.label;
  }

  // Shows an API error under a form and marks the input of the field it names.
  function showError(box, error, fieldInputs = {}) {
    clearError(box, fieldInputs);
    box.textContent = "";
    const status = error.status ? `${error.status} ${error.reason}` : error.reason;
    box.append(el("strong", { text: error.field ? `${error.field}: ` : "" }), error.message);
    box.append(" ", el("code", { text: `(${status})` }));
    box.hidden = false;
    const input = error.field ? fieldInputs[error.field] : null;
    if (input) {
      input.setAttribute("aria-invalid", "true");
      input.focus();
    }
  }

  function clearError(box, fieldInputs = {}) {
    box.hidden = true;
    box.textContent = "";
    for (const input of Object.values(fieldInputs)) input.removeAttribute("aria-invalid");
  }

  function banner(message) {
    const node = $("#banner");
    node.textContent = message || "";
    node.hidden = !message;
  }

  function showAuth(message) {
    const form = $("#auth");
    form.hidden = false;
    form.querySelector("label").textContent = message || "This server needs an API key";
    $("#api-key").focus();
  }

  function b64ToBlob(b64, type = "image/png") {
    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
    return new Blob([bytes], { type });
  }

  // --- models ----------------------------------------------------------------------------------

  async function loadModels() {
    const select = $("#model");
    try {
      const body = await (await api("models")).json();
      state.models = body.models || [];
      state.defaultModel = body.default;
      const settings = body.settings || {};
      if (Number.isInteger(settings.n_max)) state.nMax = settings.n_max;
      if (Number.isInteger(settings.max_score_images)) state.maxScoreImages = settings.max_score_images;
      select.textContent = "";
      for (const model of state.models) {
        const label = model.default ? `${model.name} (default)` : model.name;
        select.append(el("option", { value: model.name, text: label }));
      }
      const saved = readStorage("gan.model");
      select.value = state.models.some((m) => m.name === saved) ? saved : body.default;
      select.disabled = state.models.length === 0;
      $("#n").max = String(state.nMax);
      $("#steps").max = String(state.nMax);
      describeModel();
      banner(body.broken && body.broken.length
        ? `Not served (broken): ${body.broken.map((b) => b.name || JSON.stringify(b)).join(", ")}`
        : "");
      return true;
    } catch (error) {
      select.textContent = "";
      select.append(el("option", { text: "unavailable" }));
      banner(`Cannot list the models: ${error.message}`);
      return false;
    }
  }

  function describeModel() {
    const model = state.models.find((m) => m.name === $("#model").value);
    $("#model-info").textContent = model
      ? `${model.width}×${model.height} ${model.channels === 1 ? "grey" : "RGB"} · z ${model.z_dim} · ${model.loss} loss` +
        (model.classes ? ` · ${model.classes.length} classes` : "")
      : "";
    showClasses();
  }

  // --- generate --------------------------------------------------------------------------------

  const generateInputs = () => ({ seed: $("#seed"), n: $("#n"), truncation: $("#truncation"), model: $("#model"), class: $("#class") });

  async function generate(event) {
    if (event) event.preventDefault();
    const button = $("#generate-btn");
    const grid = $("#grid");
    const inputs = generateInputs();
    clearError($("#generate-error"), inputs);
    const n = numberOrRaw($("#n"));
    const body = { seed: numberOrRaw($("#seed")), n, truncation: Number($("#truncation").value) };
    const model = selectedModel();
    if (model) body.model = model;
    withClass(body);
    setBusy(button, true, "Generating…");
    grid.setAttribute("aria-busy", "true");
    const skeletons = Number.isInteger(n) && n >= 1 && n <= state.nMax ? n : 0;
    if (skeletons) {
      grid.textContent = "";
      for (let i = 0; i < skeletons; i += 1) grid.append(el("div", { class: "tile skeleton" }));
    }
    try {
      const result = await (await postJson("generate", body)).json();
      state.lastImages = result.images;
      grid.textContent = "";
      for (const image of result.images) grid.append(tile(image, result));
      $("#grid-hint").hidden = false;
    } catch (error) {
      if (skeletons) {
        grid.textContent = "";
        grid.append(el("p", { class: "placeholder muted", text: "No images: see the error above." }));
      }
      showError($("#generate-error"), error, inputs);
    } finally {
      setBusy(button, false);
      grid.removeAttribute("aria-busy");
    }
  }

  function tile(image, result) {
    const src = `data:image/png;base64,${image.png}`;
    const img = el("img", {
      src,
      alt: `seed ${image.seed}`,
      width: String(result.width),
      height: String(result.height),
      draggable: "true",
    });
    img.addEventListener("dragstart", (event) => {
      event.dataTransfer.setData("application/x-gan-seed", String(image.seed));
      event.dataTransfer.setData("text/uri-list", src);
    });
    const figure = el(
      "figure",
      { class: "tile", title: `seed ${image.seed}: click to walk from it, Alt-click to walk to it` },
      img,
      el("figcaption", {}, el("span", { text: String(image.seed) })),
    );
    figure.addEventListener("click", (event) => {
      $(event.altKey ? "#seed-b" : "#seed-a").value = String(image.seed);
      $("#walk-card").scrollIntoView({ behavior: "smooth", block: "nearest" });
    });
    return figure;
  }

  // --- latent walk -----------------------------------------------------------------------------

  const walkInputs = () => ({
    seed_a: $("#seed-a"), seed_b: $("#seed-b"), steps: $("#steps"), format: $("#walk-format"),
    scale: $("#walk-scale"), truncation: $("#truncation"), model: $("#model"),
  });

  async function walk(event) {
    if (event) event.preventDefault();
    const button = $("#walk-btn");
    const box = $("#walk-result");
    const inputs = walkInputs();
    clearError($("#walk-error"), inputs);
    const format = $("#walk-format").value;
    const body = {
      seed_a: numberOrRaw($("#seed-a")),
      seed_b: numberOrRaw($("#seed-b")),
      steps: numberOrRaw($("#steps")),
      truncation: Number($("#truncation").value),
      format,
      scale: Number($("#walk-scale").value),
    };
    const model = selectedModel();
    if (model) body.model = model;
    withClass(body);
    setBusy(button, true, "Walking…");
    box.classList.add("loading");
    box.textContent = "";
    box.append(el("div", { class: "skeleton" }));
    try {
      const response = await postJson("interpolate", body);
      const blob = await response.blob();
      if (state.walkUrl) URL.revokeObjectURL(state.walkUrl);
      state.walkUrl = URL.createObjectURL(blob);
      const name = `${format === "png" ? "strip" : "walk"}-${body.seed_a}-${body.seed_b}-${body.steps}.${format}`;
      const img = el("img", {
        src: state.walkUrl,
        alt: `latent walk from seed ${body.seed_a} to seed ${body.seed_b} in ${body.steps} steps`,
        class: format === "png" ? "strip" : "animation",
      });
      box.textContent = "";
      box.append(
        el("div", { class: "frame" }, img),
        el(
          "div",
          { class: "walk-meta small" },
          el("span", { text: `${body.steps} frames · ${response.headers.get("X-Model") || ""}` }),
          el("span", { class: "muted", text: `${(blob.size / 1024).toFixed(1)} KiB ${format.toUpperCase()}` }),
          el("a", { href: state.walkUrl, download: name, text: `Download ${name}` }),
        ),
      );
    } catch (error) {
      box.textContent = "";
      box.append(el("p", { class: "placeholder muted", text: "No walk: see the error above." }));
      showError($("#walk-error"), error, inputs);
    } finally {
      setBusy(button, false);
      box.classList.remove("loading");
    }
  }

  // --- realness --------------------------------------------------------------------------------

  const MAX_SCORE_ROWS = 60;

  function scoreRow(file) {
    const thumb = el("img", { alt: "" });
    const url = URL.createObjectURL(file);
    thumb.src = url;
    thumb.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
    return el(
      "li",
      { class: "score pending" },
      thumb,
      el("span", { class: "name", title: file.name, text: file.name }),
      el("span", { class: "realness-value", text: "…" }),
      el("div", { class: "bar", role: "meter", "aria-valuemin": "0", "aria-valuemax": "1" }, el("span")),
    );
  }

  // Scores files in requests of at most the server's GAN_MAX_SCORE_IMAGES files each.
  async function score(files) {
    if (!files.length) return;
    const list = $("#scores");
    const errorBox = $("#score-error");
    clearError(errorBox);
    const rows = files.map(scoreRow);
    list.prepend(...rows); // newest on top, in the order given
    while (list.children.length > MAX_SCORE_ROWS) list.lastElementChild.remove();
    const model = selectedModel();
    $("#drop").classList.add("busy");
    try {
      for (let start = 0; start < files.length; start += state.maxScoreImages) {
        const chunk = files.slice(start, start + state.maxScoreImages);
        const form = new FormData();
        for (const file of chunk) form.append("images", file, file.name);
        if (model) form.append("model", model);
        const klass = selectedClass();
        if (klass !== undefined) form.append("class", String(klass));
        const result = await (await api("score", { method: "POST", body: form })).json();
        result.scores.forEach((s, i) => fillScore(rows[start + i], s, result.model));
      }
    } catch (error) {
      for (const row of rows.filter((r) => r.classList.contains("pending"))) {
        row.classList.replace("pending", "failed");
        row.querySelector(".realness-value").textContent = "error";
      }
      showError(errorBox, error);
    } finally {
      $("#drop").classList.remove("busy");
    }
  }

  function fillScore(row, s, model) {
    const value = Math.min(1, Math.max(0, s.realness));
    row.classList.remove("pending");
    row.querySelector(".realness-value").textContent = value.toFixed(3);
    row.title = `${s.filename}: realness ${value.toFixed(4)}, logit ${s.logit.toFixed(3)} (${model})`;
    row.querySelector(".name").append(el("span", { class: "muted small", text: ` · ${model}` }));
    const bar = row.querySelector(".bar");
    bar.setAttribute("aria-valuenow", String(value));
    const fill = bar.querySelector("span");
    fill.style.background = `hsl(${Math.round(value * 120)} 55% 50%)`;
    // Next frame, so the width animates from 0.
    window.requestAnimationFrame(() => { fill.style.width = `${(value * 100).toFixed(1)}%`; });
  }

  async function scoreDropped(dataTransfer) {
    const files = Array.from(dataTransfer.files || []).filter((f) => f.type.startsWith("image/") || f.type === "");
    if (files.length) return score(files);
    // An image dragged from the grid: its data: URL becomes a file.
    const uri = dataTransfer.getData("text/uri-list");
    const seed = dataTransfer.getData("application/x-gan-seed");
    if (uri && uri.startsWith("data:image/")) {
      const blob = await (await fetch(uri)).blob();
      return score([new File([blob], `seed-${seed || "image"}.png`, { type: blob.type })]);
    }
    return undefined;
  }

  function scoreGrid() {
    const files = state.lastImages.map(
      (image) => new File([b64ToBlob(image.png)], `seed-${image.seed}.png`, { type: "image/png" }),
    );
    return score(files);
  }

  // --- wiring ----------------------------------------------------------------------------------

  function toggleTheme() {
    const root = document.documentElement;
    const dark = root.dataset.theme
      ? root.dataset.theme === "dark"
      : window.matchMedia("(prefers-color-scheme: dark)").matches;
    root.dataset.theme = dark ? "light" : "dark";
    writeStorage("gan.theme", root.dataset.theme);
  }

  function wire() {
    $("#generate-form").addEventListener("submit", generate);
    $("#walk-form").addEventListener("submit", walk);
    $("#shuffle").addEventListener("click", () => {
      $("#seed").value = String(randomSeed());
      generate();
    });
    for (const button of document.querySelectorAll(".shuffle-one")) {
      button.addEventListener("click", () => { $(`#${button.dataset.target}`).value = String(randomSeed()); });
    }
    const truncation = $("#truncation");
    const showTruncation = () => { $("#truncation-value").textContent = Number(truncation.value).toFixed(2); };
    truncation.addEventListener("input", showTruncation);
    showTruncation();
    $("#model").addEventListener("change", () => {
      writeStorage("gan.model", $("#model").value);
      describeModel();
      if (state.lastImages.length) generate();
    });
    $("#class").addEventListener("change", () => { if (state.lastImages.length) generate(); });
    $("#theme").addEventListener("click", toggleTheme);
    $("#score-grid").addEventListener("click", scoreGrid);

    const files = $("#files");
    files.addEventListener("change", () => {
      score(Array.from(files.files));
      files.value = "";
    });
    const drop = $("#drop");
    drop.addEventListener("dragover", (event) => {
      event.preventDefault();
      drop.classList.add("over");
    });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (event) => {
      event.preventDefault();
      drop.classList.remove("over");
      scoreDropped(event.dataTransfer);
    });

    $("#auth").addEventListener("submit", async (event) => {
      event.preventDefault();
      state.apiKey = $("#api-key").value.trim();
      writeStorage(KEY_STORAGE, state.apiKey || null);
      $("#auth").hidden = true;
      if (await loadModels()) banner("");
    });
  }

  async function start() {
    wire();
    document.body.dataset.ready = (await loadModels()) ? "true" : "error";
  }

  start();
})();
