// Workbench widget of the "text" annotation type: a text box (Enter submits, Shift+Enter is a
// new line), above it the task's audio, image or text from the configured data field.
// Contract (cynaps_data/types/base.py, AnnotationType.widget):
// mount(box, task, onReady) -> { value(), key(event) }, and summary(box, task) for review.
// Task data only ever reaches the page through DOM properties (src, textContent), never HTML.
import { el, getKey, imageSource } from "/ui/static/common.js";

const AUDIO_EXT = /\.(wav|mp3|ogg|oga|opus|flac|m4a|aac|webm)$/i;
const AUDIO_KEY = /(audio|speech|sound|voice|recording|clip)/i;
const IMAGE_EXT = /\.(png|jpe?g|gif|webp|bmp|avif)$/i;

/** An absolute http(s) URL as a URL object, or null. */
function httpUrl(value) {
  if (typeof value !== "string" || value.length > 4096 || !/^https?:\/\//i.test(value.trim())) return null;
  try {
    const url = new URL(value.trim());
    return url.protocol === "https:" || url.protocol === "http:" ? url : null;
  } catch (_) { return null; }
}

/** The element showing the configured field's value: audio, image, or its text. */
function sourceOf(key, value) {
  const url = httpUrl(value);
  if (url && (AUDIO_EXT.test(url.pathname) || (AUDIO_KEY.test(key) && !IMAGE_EXT.test(url.pathname)))) {
    const audio = el("audio", { className: "text-source-audio", controls: true, preload: "metadata" });
    audio.src = url.href;
    return audio;
  }
  const image = imageSource(value);
  if (image) {
    const img = el("img", { className: "text-source-image", alt: `${key} (image from the task)`, referrerpolicy: "no-referrer" });
    img.style.maxWidth = "100%";
    if (image.url) img.src = image.url;
    else {
      fetch(image.asset, { headers: { Authorization: `Bearer ${getKey()}` }, credentials: "omit" })
        .then((r) => (r.ok ? r.blob() : Promise.reject(new Error(`HTTP ${r.status}`))))
        .then((blob) => { img.src = URL.createObjectURL(blob); })
        .catch((e) => img.replaceWith(el("p", { className: "error", text: `Image could not be loaded (${e.message}).` })));
    }
    return img;
  }
  const text = el("div", { className: "text-source-text" });
  text.textContent = typeof value === "string" ? value : JSON.stringify(value);
  text.style.whiteSpace = "pre-wrap";
  return text;
}

/** The review page's vote summary: the distinct (normalised) answers with their counts. */
export function summary(box, task) {
  const answers = task.answers || [];
  box.replaceChildren(...answers.map((a) =>
    el("div", { className: "share" }, el("span", { className: "share-value", text: `${a.count}×` }),
      el("span", { className: "share-label", text: a.text === "" ? "(empty)" : a.text }))));
}

export function mount(box, task, onReady) {
  const config = task.labels || {};
  const parts = [];
  const field = config.field;
  const data = task.data || {};
  if (field && Object.hasOwn(data, field) && data[field] !== null) {
    parts.push(el("figure", { className: "field text-source" }, sourceOf(field, data[field]),
      el("figcaption", { text: field })));
  }
  const area = el("textarea", { className: "text-answer", rows: "5", "aria-label": "Answer", spellcheck: "true" });
  area.placeholder = config.placeholder || "";
  if (config.max_length) area.maxLength = config.max_length;
  area.style.width = "100%";
  area.style.boxSizing = "border-box";
  const counter = el("p", { className: "muted text-count" });
  const hint = el("p", { className: "muted hint", text: "Enter submits, Shift+Enter starts a new line." });

  function changed() {
    counter.textContent = `${area.value.length} / ${config.max_length || "∞"}`;
    onReady(area.value.trim().length > 0);
  }
  area.addEventListener("input", changed);
  area.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" || event.shiftKey || event.isComposing) return;
    event.preventDefault();
    const submit = document.getElementById("submit");
    if (submit && !submit.disabled) submit.click();
  });

  const wrap = el("div", { className: "text-widget" }, ...parts, area, counter, hint);
  wrap.style.flex = "1 1 100%"; // one item of the page's flex row of labels, full width
  box.replaceChildren(wrap);
  changed();
  area.focus();
  return {
    value: () => (area.value.trim().length > 0 ? area.value : null),
    key(event) {
      // outside the box: "t" goes (back) to typing; other keys are the page's (S skips)
      if (event.key === "t" && !event.shiftKey) { area.focus(); return true; }
      return false;
    },
  };
}
