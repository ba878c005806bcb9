// The model builder: a layer list and a JSON editor of one spec, checked live by the engine's
// validator and summary (output shape, parameters, FLOPs per layer) through a debounced fetch.
(function () {
  "use strict";
  const root = document.getElementById("builder");
  if (!root) return;
  const B = JSON.parse(document.getElementById("builder-data").textContent);
  const csrf = root.dataset.csrf;
  const catalog = B.catalog || { layers: {}, optimizers: {}, schedules: {}, losses: [], metrics: [] };
  const $ = (id) => document.getElementById(id);
  const HIDDEN_ARGS = /initializer|regularizer/;
  let spec = null;
  let dataConfig = Object.assign({ test_fraction: 0.2, validation_fraction: 0.1, split_seed: 0, window: 12, horizon: 1,
                                   forecast: "change", scaling: "standardize", missing: "mean", task: "auto", image_scaling: "unit",
                                   sequence_length: 128, max_tokens: 20000 },
                                 B.start.data_config || {});
  let dataInfo = null;
  let summaryTimer = null;
  let summarySeq = 0;

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    Object.entries(attrs || {}).forEach(([k, v]) => {
      if (k === "text") node.textContent = v;
      else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
      else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v === true ? "" : v);
    });
    (children || []).forEach((c) => node.appendChild(typeof c === "string" ? document.createTextNode(c) : c));
    return node;
  }
  function options(select, values, selected) {
    select.replaceChildren(...values.map((v) => {
      const [value, label] = Array.isArray(v) ? v : [v, v];
      const o = el("option", { value: value, text: label });
      if (String(value) === String(selected)) o.selected = true;
      return o;
    }));
  }
  function version() { return B.versions.find((v) => String(v.id) === $("dataset_version").value) || B.versions[0]; }
  function compact(obj) { const out = {}; Object.entries(obj).forEach(([k, v]) => { if (v !== null && v !== undefined && v !== "") out[k] = v; }); return out; }
  function configForServer() {
    const config = Object.assign({}, dataConfig);
    const kind = version().kind;
    if (kind !== "series") { delete config.window; delete config.horizon; delete config.forecast; }
    if (kind !== "images") delete config.image_scaling;
    if (!config.text) { delete config.text; delete config.sequence_length; delete config.max_tokens; }
    const features = ($("dc-features").value || "").split(",").map((s) => s.trim()).filter(Boolean);
    config.features = features.length ? features : null;
    if (!config.target) delete config.target;
    return compact(config);
  }

  // ---------------------------------------------------------------- data config
  function renderDataConfig() {
    const v = version();
    const show = (n, visible) => { n.style.display = visible ? "" : "none"; };
    root.querySelectorAll(".series-only").forEach((n) => show(n, v.kind === "series"));
    root.querySelectorAll(".not-series").forEach((n) => show(n, v.kind !== "series"));  // split by time, not by folds
    root.querySelectorAll(".images-only").forEach((n) => show(n, v.kind === "images"));
    root.querySelectorAll(".table-only").forEach((n) => show(n, v.kind !== "images"));
    const texts = v.kind === "table" ? (v.text_columns || []) : [];
    if (dataConfig.text && !texts.includes(dataConfig.text)) delete dataConfig.text;  // another version
    options($("dc-text"), [["", "none: the table's columns"]].concat(texts), dataConfig.text || "");
    root.querySelectorAll(".text-capable").forEach((n) => show(n, texts.length > 0));
    root.querySelectorAll(".text-only").forEach((n) => show(n, !!dataConfig.text));
    // The text column is the whole input: the table's feature settings do not apply.
    root.querySelectorAll(".not-text").forEach((n) => show(n, !dataConfig.text && (!n.classList.contains("table-only") || v.kind !== "images")));
    const columns = v.columns || [];
    options($("dc-target"), [["", "(data set default: " + (v.target || "last column") + ")"]].concat(columns), dataConfig.target || "");
    show($("dc-target").closest("label"), v.kind !== "images");
    root.querySelectorAll("[data-config]").forEach((input) => {
      const key = input.dataset.config;
      if (key === "target" || key === "text") return;
      if (dataConfig[key] !== undefined && dataConfig[key] !== null) input.value = dataConfig[key];
    });
    $("dc-features").value = (dataConfig.features || []).join(", ");
  }

  // ---------------------------------------------------------------- layers
  // Bidirectional's wrapped layer: its type, units and return_sequences as fields of their own.
  function recurrentInput(layer, index, arg) {
    const inner = layer[arg.name] && typeof layer[arg.name] === "object" ? layer[arg.name] : { type: "LSTM", units: 32 };
    layer[arg.name] = inner;
    const id = "layer-" + index + "-" + arg.name;
    const type = el("select", { id: id + "-type", "aria-label": "Layer " + index + " wrapped type" });
    options(type, ["LSTM", "GRU", "SimpleRNN"], inner.type);
    const units = el("input", { id: id + "-units", type: "number", step: "1", min: "1", value: inner.units ?? 32 });
    const sequences = el("input", { id: id + "-return_sequences", type: "checkbox" });
    sequences.checked = !!inner.return_sequences;
    const changed = () => {
      const next = { type: type.value, units: parseInt(units.value, 10) };
      if (Number.isNaN(next.units)) delete next.units;
      if (sequences.checked) next.return_sequences = true;
      if (next.type === "SimpleRNN" && inner.type === "SimpleRNN" && inner.activation) next.activation = inner.activation;
      layer[arg.name] = next;
      renderJson();
      scheduleSummary();
    };
    [type, sequences].forEach((n) => n.addEventListener("change", changed));
    units.addEventListener("input", changed);
    return [el("label", { for: type.id }, ["wraps", type]), el("label", { for: units.id }, ["units", units]),
            el("label", { for: sequences.id }, ["return_sequences", sequences])];
  }
  function argInput(layer, index, arg) {
    if (arg.kind === "recurrent_layer") return recurrentInput(layer, index, arg);
    const current = layer[arg.name];
    const id = "layer-" + index + "-" + arg.name;
    let input;
    if (arg.kind === "choice") {
      input = el("select", { id: id });
      const values = (arg.default === null || !arg.required) && arg.default === null ? [["", "none"]] : [];
      options(input, values.concat(arg.choices), current === undefined ? (arg.default ?? "") : (current ?? ""));
    } else if (arg.kind === "bool") {
      input = el("input", { id: id, type: "checkbox" });
      input.checked = current === undefined ? !!arg.default : !!current;
    } else if (arg.kind === "int" || arg.kind === "float") {
      input = el("input", { id: id, type: "number", step: arg.kind === "int" ? "1" : "any",
                            value: current ?? "", placeholder: arg.default ?? (arg.required ? "required" : "") });
    } else {
      const shown = current === undefined || current === null ? "" : (typeof current === "object" ? JSON.stringify(current) : current);
      input = el("input", { id: id, type: "text", value: shown, placeholder: arg.default === undefined || arg.default === null ? "" : JSON.stringify(arg.default) });
    }
    input.addEventListener(input.tagName === "SELECT" || input.type === "checkbox" ? "change" : "input", () => {
      setArg(layer, arg, input);
      renderJson();
      scheduleSummary();
    });
    return el("label", { for: id }, [arg.name, input]);
  }
  function setArg(layer, arg, input) {
    let value;
    if (input.type === "checkbox") value = input.checked;
    else if (input.value === "") value = undefined;
    else if (arg.kind === "int") value = parseInt(input.value, 10);
    else if (arg.kind === "float") value = parseFloat(input.value);
    else if (arg.kind === "choice") value = input.value;
    else if (arg.kind === "pair") value = input.value.includes(",") ? input.value.split(",").map((s) => parseInt(s, 10)) : parseInt(input.value, 10);
    else { try { value = JSON.parse(input.value); } catch (e) { value = input.value; } }
    if (value === undefined || (typeof value === "number" && Number.isNaN(value))) delete layer[arg.name];
    else layer[arg.name] = value;
  }
  function renderLayers() {
    const box = $("layers");
    const rows = (spec.layers || []).map((layer, i) => {
      const args = (catalog.layers[layer.type] || []).filter((a) => !HIDDEN_ARGS.test(a.name) || layer[a.name] !== undefined);
      const type = el("select", { class: "type", "aria-label": "Layer " + i + " type" });
      options(type, Object.keys(catalog.layers), layer.type);
      type.addEventListener("change", () => { spec.layers[i] = { type: type.value }; renderLayers(); renderJson(); scheduleSummary(); });
      const move = (delta) => () => {
        const j = i + delta;
        if (j < 0 || j >= spec.layers.length) return;
        [spec.layers[i], spec.layers[j]] = [spec.layers[j], spec.layers[i]];
        renderLayers(); renderJson(); scheduleSummary();
      };
      const remove = () => { spec.layers.splice(i, 1); renderLayers(); renderJson(); scheduleSummary(); };
      return el("div", { class: "layer", "data-layer": i }, [
        el("span", { class: "index", text: String(i) }),
        type,
        el("div", { class: "args" }, args.flatMap((a) => argInput(layer, i, a))),
        el("div", { class: "tools" }, [
          el("button", { type: "button", class: "secondary", title: "Move up", "aria-label": "Move layer " + i + " up", onclick: move(-1), text: "↑" }),
          el("button", { type: "button", class: "secondary", title: "Move down", "aria-label": "Move layer " + i + " down", onclick: move(1), text: "↓" }),
          el("button", { type: "button", class: "secondary", title: "Remove", "aria-label": "Remove layer " + i, onclick: remove, text: "✕" }),
        ]),
        el("div", { class: "shape", "data-shape-for": i, text: "…" }),
      ]);
    });
    box.replaceChildren(...rows);
    if (!rows.length) box.appendChild(el("p", { class: "muted", text: "No layers yet: add one below." }));
  }

  // ---------------------------------------------------------------- training settings
  function optimizerOf() {
    const o = (spec.compile = spec.compile || {}).optimizer;
    if (typeof o === "string") spec.compile.optimizer = { type: o };
    return spec.compile.optimizer = spec.compile.optimizer || { type: "adam" };
  }
  function renderTraining() {
    const c = spec.compile = spec.compile || {};
    const f = spec.fit = spec.fit || {};
    const opt = optimizerOf();
    options($("loss"), catalog.losses, typeof c.loss === "object" ? c.loss.type : c.loss);
    options($("optimizer"), Object.keys(catalog.optimizers), opt.type);
    const lr = opt.learning_rate;
    const scheduled = lr && typeof lr === "object";
    $("learning_rate").value = scheduled ? (lr.initial_learning_rate ?? "") : (lr ?? "");
    options($("schedule"), [["", "constant"]].concat(Object.keys(catalog.schedules)), scheduled ? lr.type : "");
    renderScheduleArgs();
    renderOptimizerArgs();
    $("epochs").value = f.epochs ?? "";
    $("batch_size").value = f.batch_size ?? "";
    $("seed").value = f.seed ?? "";
    $("find-lr").checked = !!f.find_learning_rate;
    const metrics = c.metrics || [];
    $("metrics").replaceChildren(el("span", { class: "muted", text: "Metrics:" }), ...catalog.metrics.map((m) => {
      const box = el("input", { type: "checkbox", value: m });
      box.checked = metrics.includes(m);
      box.addEventListener("change", readTraining);
      return el("label", { class: "nowrap" }, [box, " " + m]);
    }));
    const monitors = ["val_loss", "loss"].concat(metrics.map((m) => "val_" + m));
    const es = f.early_stopping;
    options($("es-monitor"), [["", "off"]].concat(monitors), es ? es.monitor : "");
    $("es-patience").value = es && es.patience !== undefined ? es.patience : 5;  // a new spec: not the last one's
    const plateau = f.reduce_lr_on_plateau;
    options($("lr-monitor"), [["", "off"]].concat(monitors), plateau ? plateau.monitor : "");
    $("lr-factor").value = plateau && plateau.factor !== undefined ? plateau.factor : 0.5;
    $("lr-patience").value = plateau && plateau.patience !== undefined ? plateau.patience : 3;
    const weights = $("class-weight");
    weights.querySelector("option[value=given]")?.remove();
    if (Array.isArray(f.class_weight)) weights.appendChild(el("option", { value: "given", text: "as in the JSON" }));
    weights.value = Array.isArray(f.class_weight) ? "given" : (f.class_weight || "");
  }
  function renderScheduleArgs() {
    const opt = optimizerOf();
    const lr = opt.learning_rate;
    const box = $("schedule-args");
    if (!lr || typeof lr !== "object") { box.replaceChildren(); return; }
    const args = (catalog.schedules[lr.type] || []).filter((a) => a.name !== "initial_learning_rate");
    box.replaceChildren(...args.map((a) => {
      const input = el("input", { type: a.kind === "bool" ? "checkbox" : "number", step: "any", value: lr[a.name] ?? a.default ?? "" });
      if (a.kind === "bool") input.checked = !!(lr[a.name] ?? a.default);
      input.addEventListener("input", () => { setArg(lr, a, input); renderJson(); scheduleSummary(); });
      return el("label", {}, [a.name.replace(/_/g, " "), input]);
    }));
  }
  function renderOptimizerArgs() {
    const opt = optimizerOf();
    const args = (catalog.optimizers[opt.type] || []).filter((a) => a.name !== "learning_rate");
    const summary = () => {
      const set = args.filter((a) => opt[a.name] !== undefined && opt[a.name] !== null).map((a) => a.name.replace(/_/g, " ") + " " + opt[a.name]);
      $("optimizer-options-summary").textContent = set.length ? "· " + set.join(", ") : "· " + opt.type + "'s defaults";
      return set.length;
    };
    $("optimizer-args").replaceChildren(...args.map((a) => {
      const label = argInput(opt, "optimizer", a);
      label.appendChild(el("span", { class: "field-error", "data-error-for": "compile.optimizer." + a.name }));
      label.querySelector("input, select").addEventListener("input", summary);
      label.querySelector("input, select").addEventListener("change", summary);
      return label;
    }));
    if (summary()) $("optimizer-options").open = true;
  }
  function readTraining() {
    const c = spec.compile = spec.compile || {};
    const f = spec.fit = spec.fit || {};
    c.loss = $("loss").value;
    const opt = optimizerOf();
    if (opt.type !== $("optimizer").value) {  // another optimizer: keep only the options it takes too
      opt.type = $("optimizer").value;
      const known = new Set((catalog.optimizers[opt.type] || []).map((a) => a.name));
      Object.keys(opt).forEach((k) => { if (k !== "type" && !known.has(k)) delete opt[k]; });
      renderOptimizerArgs();
    }
    const rate = parseFloat($("learning_rate").value);
    const scheduleType = $("schedule").value;
    if (scheduleType) {
      const previous = typeof opt.learning_rate === "object" && opt.learning_rate ? opt.learning_rate : {};
      const schedule = previous.type === scheduleType ? previous : { type: scheduleType };
      (catalog.schedules[scheduleType] || []).forEach((a) => { if (a.required && schedule[a.name] === undefined && a.name !== "initial_learning_rate") schedule[a.name] = a.kind === "int" ? 1000 : 0.5; });
      schedule.initial_learning_rate = Number.isNaN(rate) ? 0.001 : rate;
      opt.learning_rate = schedule;
    } else if (!Number.isNaN(rate)) opt.learning_rate = rate;
    else delete opt.learning_rate;
    c.metrics = Array.from($("metrics").querySelectorAll("input:checked")).map((b) => b.value);
    const intOf = (id) => { const v = parseInt($(id).value, 10); return Number.isNaN(v) ? undefined : v; };
    f.epochs = intOf("epochs");
    f.batch_size = intOf("batch_size");
    f.seed = intOf("seed");
    f.find_learning_rate = $("find-lr").checked ? (f.find_learning_rate || {}) : null;
    Object.keys(f).forEach((k) => f[k] === undefined && delete f[k]);
    const monitor = $("es-monitor").value;
    f.early_stopping = monitor ? { monitor: monitor, patience: intOf("es-patience") ?? 5, restore_best_weights: true } : null;
    const plateauMonitor = $("lr-monitor").value;
    const factor = parseFloat($("lr-factor").value);
    const weighting = dataInfo && dataInfo.task !== "classification" ? "" : $("class-weight").value;  // hidden: none
    f.class_weight = weighting === "balanced" ? "balanced" : (weighting === "given" ? f.class_weight : null);
    // The floor (unless the JSON sets one): a thousandth of the starting rate, not Keras' 0.
    const floor = Number(((Number.isNaN(rate) ? 0.001 : rate) / 1000).toPrecision(2));
    f.reduce_lr_on_plateau = plateauMonitor ? { min_lr: floor, ...(f.reduce_lr_on_plateau || {}), monitor: plateauMonitor,
      factor: Number.isNaN(factor) ? 0.5 : factor, patience: intOf("lr-patience") ?? 3 } : null;
    renderScheduleArgs();
    renderJson();
    scheduleSummary();
  }

  // ---------------------------------------------------------------- JSON editor and summary
  function renderJson() { $("spec-json").value = JSON.stringify(spec, null, 2); $("json-error").textContent = ""; }
  function showErrors(errors) {
    root.querySelectorAll("[data-error-for]").forEach((n) => { if (n.id !== "json-error") n.textContent = ""; });
    $("submit-error").textContent = "";  // what the last check or Train said: this check answers for the spec as it is now
    root.querySelectorAll(".layer.has-error").forEach((n) => n.classList.remove("has-error"));
    (errors || []).forEach((e) => {
      const field = e.field || "spec";
      const layer = /^layers\[(\d+)\]/.exec(field);
      if (layer) {
        const row = root.querySelector('[data-layer="' + layer[1] + '"]');
        if (row) {
          row.classList.add("has-error");
          const shape = row.querySelector(".shape");
          shape.textContent = field + ": " + e.message;
          shape.classList.add("field-error");
          return;
        }
      }
      let target = null;
      for (let key = field; key; key = key.includes(".") ? key.slice(0, key.lastIndexOf(".")) : "") {
        target = root.querySelector('[data-error-for="' + key + '"]');
        if (target) break;
      }
      if (!target && field.startsWith("data_config")) target = root.querySelector('[data-error-for="data_config"]');
      (target || $("submit-error")).textContent = (target ? "" : field + ": ") + e.message;
      const folded = target && target.closest("details");
      if (folded) folded.open = true;  // an error inside folded options shows itself
    });
  }
  function showSummary(summary) {
    const fmt = (n) => Number(n).toLocaleString();
    $("input-shape").textContent = "(" + summary.input_shape.join(", ") + ")";
    $("output-shape").textContent = "(" + summary.output_shape.join(", ") + ")";
    $("total-params").textContent = fmt(summary.total_params);
    $("total-flops").textContent = fmt(summary.total_flops);
    summary.layers.forEach((row) => {
      const node = root.querySelector('[data-shape-for="' + row.index + '"]');
      if (node && node.closest(".layer.has-error")) return;  // the row shows its error (e.g. the output's shape)
      if (node) { node.classList.remove("field-error"); node.textContent = "→ (" + row.output_shape.join(", ") + ") · " + fmt(row.params) + " params · " + fmt(row.flops) + " FLOPs"; }
    });
  }
  function showData(data) {
    if (!data) return;
    dataInfo = data;
    root.querySelectorAll(".classification-only").forEach((n) => { n.style.display = data.task === "classification" ? "" : "none"; });
    const rows = data.rows || {};
    const classes = data.task === "classification" ? ", " + data.outputs + " classes (" + data.class_names.slice(0, 8).join(", ") + (data.class_names.length > 8 ? ", …" : "") + ")" : "";
    $("data-info").textContent = data.kind + " · " + data.task + classes + " · input (" + data.input_shape.join(", ") + ") · " +
      rows.train + " train / " + rows.validation + " validation / " + rows.test + " test rows";
  }
  function post(url, body) {
    return fetch(url, { method: "POST", credentials: "same-origin", body: JSON.stringify(body),
                        headers: { "Content-Type": "application/json", "X-CSRFToken": csrf } });
  }
  function scheduleSummary() {
    clearTimeout(summaryTimer);
    summaryTimer = setTimeout(async () => {
      const seq = ++summarySeq;
      try {
        const response = await post(B.summary_url, { spec: spec, dataset_version: Number(version().id), data_config: configForServer() });
        const answer = await response.json();
        if (seq !== summarySeq) return;  // a newer edit is on its way
        showData(answer.data);
        showErrors(answer.errors || (response.ok ? [] : [{ field: "spec", message: answer.detail || "invalid" }]));
        if (answer.summary) showSummary(answer.summary);
      } catch (error) { $("submit-error").textContent = "Could not reach the server to check the spec."; }
    }, 300);
  }
  async function loadTemplate(start) {
    const params = new URLSearchParams({ version: version().id, data_config: JSON.stringify(configForServer()), start: start });
    const response = await fetch(B.template_url + "?" + params, { credentials: "same-origin" });
    const answer = await response.json();
    if (answer.errors && answer.errors.length) { showErrors(answer.errors); if (!spec) { spec = { layers: [], compile: {}, fit: {} }; renderAll(); } return; }
    spec = answer.spec;
    $("optimizer-options").open = false;  // a new spec: folded again unless it sets options of its own
    showData(answer.data);
    renderAll();
  }
  function renderAll() { renderDataConfig(); renderLayers(); renderTraining(); renderJson(); scheduleSummary(); }

  // ---------------------------------------------------------------- submit
  function tags() { return ($("run-tags").value || "").split(",").map((s) => s.trim()).filter(Boolean); }
  async function submit(url, body, button) {
    const marked = root.querySelector(".layer.has-error .shape");
    if (marked) {  // the live check found a layer that cannot train (a shape, an output the data does not fit)
      $("submit-error").textContent = "Fix the layer marked in red first: " + marked.textContent;
      return;
    }
    button.disabled = true;
    $("submit-error").textContent = "";
    try {
      const response = await post(url, body);
      const answer = await response.json();
      if (response.ok) { window.location.href = answer.url; return; }
      showErrors(answer.errors && answer.errors.length ? answer.errors : [{ field: answer.field || "spec", message: answer.detail }]);
      if (!$("submit-error").textContent) $("submit-error").textContent = answer.detail || "The run was not started.";
    } catch (error) { $("submit-error").textContent = "Could not reach the server."; }
    button.disabled = false;
  }
  $("train").addEventListener("click", () => submit(B.create_url, {
    dataset_version: Number(version().id), spec: spec, data_config: configForServer(), name: $("run-name").value,
    device: $("device").value, tags: tags() }, $("train")));
  $("sweep-stopping").addEventListener("change", () => { $("sweep-factor-field").hidden = $("sweep-stopping").value !== "asha"; });
  function stopping() {  // the sweep's rule for stopping poor runs early, or null
    const rule = $("sweep-stopping").value;
    if (rule === "none") return null;
    const chosen = { rule: rule, grace_epochs: parseInt($("sweep-grace").value, 10) || 3 };
    if (rule === "asha") chosen.reduction_factor = parseInt($("sweep-factor").value, 10) || 3;
    return chosen;
  }
  $("cross-validate").addEventListener("click", () => {  // a grid over the fold alone
    const folds = parseInt($("cv-folds").value, 10);
    const space = { fold: Number.isNaN(folds) ? [] : Array.from({ length: Math.max(folds, 0) }, (_, i) => i) };
    submit(B.sweep_url, { dataset_version: Number(version().id), spec: spec, method: "grid", space: space,
      data_config: Object.assign(configForServer(), { folds: Number.isNaN(folds) ? null : folds }),
      name: $("run-name").value, device: $("device").value, stopping: null }, $("cross-validate"));
  });
  $("sweep").addEventListener("click", () => {
    const space = {};
    root.querySelectorAll("[data-sweep]").forEach((input) => {
      const text = input.value.trim();
      const range = text.match(/^([^,]+?)\s*\.\.\s*([^,]+)$/);  // "0.0001 .. 0.1": a range, for random search
      if (range && !("sweepNames" in input.dataset)) {
        space[input.dataset.sweep] = { low: Number(range[1]), high: Number(range[2]) };
        return;
      }
      const names = text.split(",").map((s) => s.trim()).filter(Boolean);
      const values = "sweepNames" in input.dataset ? names : names.map(Number);
      if (values.length) space[input.dataset.sweep] = values;
    });
    submit(B.sweep_url, { dataset_version: Number(version().id), spec: spec, data_config: configForServer(), space: space,
      method: $("sweep-method").value, count: parseInt($("sweep-count").value, 10) || 6, name: $("run-name").value,
      device: $("device").value, stopping: stopping() }, $("sweep"));
  });

  // ---------------------------------------------------------------- wiring
  options($("add-type"), Object.keys(catalog.layers), "Dense");
  $("add-layer").addEventListener("click", () => {
    const type = $("add-type").value;
    const layer = { type: type };
    (catalog.layers[type] || []).forEach((a) => { if (a.required) layer[a.name] = a.kind === "recurrent_layer" ? { type: "LSTM", units: 32 } : (a.kind === "pair" || a.name === "kernel_size" ? 3 : (a.kind === "float" ? 0.1 : (a.name === "num_heads" ? 2 : 32))); });
    spec.layers = spec.layers || [];
    const last = spec.layers.length ? spec.layers.length - 1 : 0;
    // Augmentation (RandomFlip, RandomTranslation) changes the input images: first; others before the output layer.
    spec.layers.splice(/^Random/.test(type) ? 0 : Math.max(0, last), 0, layer);
    renderLayers(); renderJson(); scheduleSummary();
  });
  ["loss", "optimizer", "learning_rate", "schedule", "epochs", "batch_size", "seed", "es-monitor", "es-patience",
   "lr-monitor", "lr-factor", "lr-patience", "class-weight", "find-lr"].forEach((id) =>
    $(id).addEventListener($(id).tagName === "SELECT" ? "change" : "input", readTraining));
  root.querySelectorAll("[data-config]").forEach((input) => input.addEventListener("change", () => {
    const key = input.dataset.config;
    dataConfig[key] = input.hasAttribute("data-number") ? (input.hasAttribute("data-int") ? parseInt(input.value, 10) : parseFloat(input.value)) : input.value;
    if (key === "target" && !input.value) delete dataConfig.target;
    if (key === "text" || (dataConfig.text && (key === "max_tokens" || key === "sequence_length"))) {
      // another input altogether (or another vocabulary for its Embedding): the template for it
      if (key === "text" && !input.value) delete dataConfig.text;
      renderDataConfig();
      loadTemplate("template");
      return;
    }
    scheduleSummary();
  }));
  $("dc-features").addEventListener("change", scheduleSummary);
  // A table whose only columns besides its target are free text: a text model, from its first text column.
  function textByDefault() { const v = version(); if (v.text_only && !dataConfig.text) dataConfig.text = v.text_columns[0]; }
  $("dataset_version").addEventListener("change", () => {
    dataConfig.target = undefined;
    delete dataConfig.text;
    textByDefault();
    renderDataConfig();
    loadTemplate("template");
  });
  $("spec-json").addEventListener("input", () => {
    try {
      const parsed = JSON.parse($("spec-json").value);
      if (!parsed || typeof parsed !== "object" || Array.isArray(parsed)) throw new Error("the spec must be a JSON object");
      spec = parsed;
      $("json-error").textContent = "";
      renderLayers(); renderTraining(); scheduleSummary();
    } catch (error) { $("json-error").textContent = "JSON: " + error.message; }
  });
  root.querySelectorAll("[data-start]").forEach((button) => button.addEventListener("click", () => {
    const start = button.dataset.start;
    if (start === "run") { spec = JSON.parse(JSON.stringify(B.start.spec)); renderAll(); }
    else loadTemplate(start);
  }));

  if (B.start.dataset_version) $("dataset_version").value = String(B.start.dataset_version);
  if (B.start.spec) { spec = JSON.parse(JSON.stringify(B.start.spec)); renderAll(); }
  else { textByDefault(); renderDataConfig(); loadTemplate("template"); }
})();
