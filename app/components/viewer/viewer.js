// The viewer's image: fit, zoom (wheel, buttons, + − 0 1 keys, double-click) and pan (drag).
// Streamlit calls the default export with new data on every rerun; the view lives on the root.

const MIN_SCALE = 0.02;
const MAX_SCALE = 32;
const TYPING = new Set(["INPUT", "TEXTAREA", "SELECT"]);

function clamp(scale) {
  return Math.min(Math.max(scale, MIN_SCALE), MAX_SCALE);
}

function createView(root) {
  const stage = root.querySelector(".stage");
  const picture = root.querySelector(".picture");
  const message = root.querySelector(".message");
  const level = root.querySelector(".level");
  const view = { scale: 1, x: 0, y: 0, fitted: true, width: 0, height: 0, src: null, token: 0, preloaded: [] };

  function apply() {
    picture.style.transform = `translate(${view.x}px, ${view.y}px) scale(${view.scale})`;
    picture.classList.toggle("pixels", view.scale >= 2);
    level.textContent = view.fitted ? `fit ${Math.round(view.scale * 100)}%` : `${Math.round(view.scale * 100)}%`;
    stage.dataset.scale = view.scale.toFixed(4);
  }

  function fit() {
    if (!view.width || !view.height) return;
    view.fitted = true;
    view.scale = Math.min(stage.clientWidth / view.width, stage.clientHeight / view.height, 1);
    view.x = (stage.clientWidth - view.width * view.scale) / 2;
    view.y = (stage.clientHeight - view.height * view.scale) / 2;
    apply();
  }

  function zoomAt(scale, cx, cy) {
    const next = clamp(scale);
    view.x = cx - (cx - view.x) * (next / view.scale);
    view.y = cy - (cy - view.y) * (next / view.scale);
    view.scale = next;
    view.fitted = false;
    apply();
  }

  function zoom(command, cx = stage.clientWidth / 2, cy = stage.clientHeight / 2) {
    if (command === "in") zoomAt(view.scale * 1.25, cx, cy);
    else if (command === "out") zoomAt(view.scale / 1.25, cx, cy);
    else if (command === "actual") zoomAt(1, cx, cy);
    else fit();
  }

  function local(event) {
    const box = stage.getBoundingClientRect();
    return [event.clientX - box.left, event.clientY - box.top];
  }

  const onWheel = (event) => {
    event.preventDefault();
    const [cx, cy] = local(event);
    zoomAt(view.scale * Math.exp(-event.deltaY * 0.0015), cx, cy);
  };
  let drag = null;
  const onDown = (event) => {
    if (event.button !== 0 || event.target.closest(".hud")) return;
    drag = { x: event.clientX - view.x, y: event.clientY - view.y };
    stage.setPointerCapture(event.pointerId);
    stage.classList.add("dragging");
  };
  const onMove = (event) => {
    if (!drag) return;
    view.x = event.clientX - drag.x;
    view.y = event.clientY - drag.y;
    view.fitted = false;
    apply();
  };
  const onUp = () => {
    drag = null;
    stage.classList.remove("dragging");
  };
  const onDouble = (event) => {
    if (event.target.closest(".hud")) return;
    const [cx, cy] = local(event);
    if (view.fitted) zoomAt(1, cx, cy);
    else fit();
  };
  const onHud = (event) => {
    const button = event.target.closest("button[data-zoom]");
    if (button) zoom(button.dataset.zoom);
  };
  const onKey = (event) => {
    if (!stage.isConnected || event.ctrlKey || event.metaKey || event.altKey) return;
    const target = event.composedPath()[0];
    if (target && (TYPING.has(target.tagName) || target.isContentEditable)) return;
    const command = { "+": "in", "=": "in", "-": "out", _: "out", 0: "fit", 1: "actual" }[event.key];
    if (command) {
      event.preventDefault();
      zoom(command);
    }
  };
  const resize = new ResizeObserver(() => {
    if (view.fitted) fit();
  });

  stage.addEventListener("wheel", onWheel, { passive: false });
  stage.addEventListener("pointerdown", onDown);
  stage.addEventListener("pointermove", onMove);
  stage.addEventListener("pointerup", onUp);
  stage.addEventListener("pointercancel", onUp);
  stage.addEventListener("dblclick", onDouble);
  root.querySelector(".hud").addEventListener("click", onHud);
  document.addEventListener("keydown", onKey);
  resize.observe(stage);

  function say(text) {
    message.textContent = text;
    message.hidden = !text;
  }

  function show(data) {
    stage.dataset.imageId = data.id;
    stage.classList.toggle("short", Boolean(data.short));
    view.preloaded = (data.preload || []).map((url) => {
      const image = new Image();
      image.src = url;
      return image;
    });
    if (data.problem || !data.src) {
      view.src = null;
      view.token += 1;
      picture.classList.remove("ready");
      delete stage.dataset.loaded;
      say(data.problem || "No image to show.");
      return;
    }
    if (data.src === view.src) {
      stage.dataset.loaded = data.id;
      return;
    }
    view.src = data.src;
    const token = ++view.token;
    const loader = new Image();
    const slow = setTimeout(() => token === view.token && say("Loading…"), 250);
    loader.src = data.src;
    loader
      .decode()
      .then(() => {
        if (token !== view.token) return;
        view.width = loader.naturalWidth;
        view.height = loader.naturalHeight;
        picture.width = view.width;
        picture.height = view.height;
        picture.src = data.src;
        picture.alt = data.name || "";
        say("");
        fit();
        picture.classList.add("ready");
        stage.dataset.loaded = data.id;
        stage.dataset.natural = `${view.width}x${view.height}`;
      })
      .catch(() => token === view.token && say(`${data.name || "This image"} could not be shown.`))
      .finally(() => clearTimeout(slow));
  }

  function destroy() {
    document.removeEventListener("keydown", onKey);
    resize.disconnect();
  }

  return { show, destroy };
}

export default function (component) {
  const { data, parentElement } = component;
  if (!parentElement.__vadView) parentElement.__vadView = createView(parentElement);
  parentElement.__vadView.show(data || {});
  return () => {
    parentElement.__vadView?.destroy();
    delete parentElement.__vadView;
  };
}
