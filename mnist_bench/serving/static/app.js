// The draw-a-digit page: pointer strokes on #pad; on lift the canvas goes to POST /predict
// as a PNG; the answer fills #digit, the ten bars and the 28x28 image the model saw.
"use strict";
(function () {
  const pad = document.getElementById("pad");
  const ctx = pad.getContext("2d");
  const seen = document.getElementById("seen").getContext("2d");
  const digit = document.getElementById("digit");
  const bars = document.getElementById("bars");
  const status = document.getElementById("status");
  const model = document.getElementById("model");
  const STROKE = 20; // pixels on the 280x280 pad: about a 2-pixel MNIST stroke after 20x20 scaling
  let drawing = false, inked = false, last = null, pending = 0;

  for (let d = 0; d < 10; d++) {
    const li = document.createElement("li");
    li.innerHTML = `<span class="d">${d}</span><span class="track"><span class="fill"></span></span><span class="p">0.000</span>`;
    bars.appendChild(li);
  }

  function clear() {
    ctx.fillStyle = "#000";
    ctx.fillRect(0, 0, pad.width, pad.height);
    seen.fillStyle = "#000";
    seen.fillRect(0, 0, 28, 28);
    inked = false;
    digit.textContent = "\u2013";
    digit.dataset.state = "idle";
    for (const li of bars.children) {
      li.className = "";
      li.querySelector(".fill").style.width = "0";
      li.querySelector(".p").textContent = "0.000";
    }
    status.textContent = "";
    status.className = "status";
  }

  // Which model answers: name, recipe, and whether its probabilities are calibrated.
  function describe(m) {
    const recipe = m.recipe ? `, ${m.recipe} recipe` : "";
    const calibration = m.calibrated === true ? `calibrated probabilities (temperature ${Number(m.temperature).toFixed(2)})`
      : m.calibrated === false ? "uncalibrated probabilities (raw softmax)" : "calibration unknown";
    return `model: ${m.name || m.file}${recipe}; ${calibration}; ${m.runtime}`;
  }

  fetch("/healthz").then((r) => r.json()).then((h) => {
    model.textContent = describe(h.model);
    model.dataset.calibrated = String(h.model.calibrated);
  }).catch(() => { model.textContent = "model: unknown (GET /healthz failed)"; });

  function point(event) {
    const r = pad.getBoundingClientRect();
    return { x: (event.clientX - r.left) * (pad.width / r.width), y: (event.clientY - r.top) * (pad.height / r.height) };
  }

  function line(a, b) {
    ctx.strokeStyle = "#fff";
    ctx.lineWidth = STROKE;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.beginPath();
    ctx.moveTo(a.x, a.y);
    ctx.lineTo(b.x, b.y);
    ctx.stroke();
    inked = true;
  }

  function show(answer) {
    digit.textContent = String(answer.digit);
    answer.probabilities.forEach((p, d) => {
      const li = bars.children[d];
      li.className = d === answer.digit ? "top" : "";
      li.querySelector(".fill").style.width = (100 * p).toFixed(1) + "%";
      li.querySelector(".p").textContent = p.toFixed(3);
    });
    const img = seen.createImageData(28, 28);
    answer.image.forEach((row, i) => row.forEach((v, j) => {
      const k = 4 * (28 * i + j);
      img.data[k] = img.data[k + 1] = img.data[k + 2] = v;
      img.data[k + 3] = 255;
    }));
    seen.putImageData(img, 0, 0);
    status.textContent = `${answer.model.runtime}, model ${answer.model.sha256.slice(0, 12)}, ${answer.latency_ms.toFixed(2)} ms in the server`;
  }

  function predict() {
    if (!inked) return;
    const id = ++pending;
    digit.dataset.state = "busy";
    pad.toBlob(async (blob) => {
      try {
        const response = await fetch("/predict", { method: "POST", headers: { "Content-Type": "image/png" }, body: blob });
        const answer = await response.json();
        if (id !== pending) return; // a newer stroke's answer is on its way
        if (!response.ok) throw new Error(answer.error || response.statusText);
        show(answer);
        digit.dataset.state = "done";
      } catch (err) {
        if (id !== pending) return;
        status.textContent = "error: " + err.message;
        status.className = "status error";
        digit.dataset.state = "error";
      } finally {
        digit.dataset.requests = String(Number(digit.dataset.requests) + 1);
      }
    }, "image/png");
  }

  pad.addEventListener("pointerdown", (e) => {
    drawing = true;
    last = point(e);
    line(last, last);
    pad.setPointerCapture(e.pointerId);
    e.preventDefault();
  });
  pad.addEventListener("pointermove", (e) => {
    if (!drawing) return;
    const p = point(e);
    line(last, p);
    last = p;
    e.preventDefault();
  });
  function end(e) {
    if (!drawing) return;
    drawing = false;
    predict();
    e.preventDefault();
  }
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  document.getElementById("clear").addEventListener("click", clear);
  clear();
})();
