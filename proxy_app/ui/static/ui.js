// The UI's few behaviours: copy a new key, draw top-list bars, stream the playground's reply.
// No framework and no build: pages work without this file except the playground.
"use strict";

document.addEventListener("DOMContentLoaded", () => {
  document.querySelectorAll("[data-copy]").forEach((button) => {
    button.addEventListener("click", async () => {
      const field = document.querySelector(button.dataset.copy);
      const status = document.getElementById(button.getAttribute("aria-describedby"));
      field.select();
      try {
        await navigator.clipboard.writeText(field.value);
      } catch (_) {
        document.execCommand("copy"); // plain http: the async clipboard API needs a secure context
      }
      if (status) status.textContent = "Copied.";
    });
  });
  document.querySelectorAll(".rank-bar[data-share]").forEach((bar) => {
    bar.style.width = `${Math.round(parseFloat(bar.dataset.share) * 100)}%`;
  });
  const form = document.getElementById("playground-form");
  if (form) playground(form);
});

function playground(form) {
  const transcript = document.getElementById("p-transcript");
  const send = document.getElementById("p-send");
  const stop = document.getElementById("p-stop");
  const stat = (id, text) => { document.getElementById(id).textContent = text; };
  const history = [];
  let controller = null;

  stop.addEventListener("click", () => controller && controller.abort());
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const data = new FormData(form);
    const message = data.get("message").trim();
    if (!message) return;
    if (!history.length) transcript.textContent = "";
    history.push({ role: "user", content: message });
    bubble(transcript, "user", message);
    const reply = bubble(transcript, "assistant", "");
    reply.classList.add("streaming");
    form.elements.message.value = "";
    const messages = (data.get("system").trim() ? [{ role: "system", content: data.get("system").trim() }] : [])
      .concat(history);
    ["p-ttft", "p-latency", "p-tokens", "p-cost"].forEach((id) => stat(id, "…"));
    send.disabled = true; stop.disabled = false;
    controller = new AbortController();
    const began = performance.now();
    let text = "", usage = null, callId = null;
    try {
      const response = await fetch(form.dataset.endpoint, {
        method: "POST", signal: controller.signal,
        headers: { "Content-Type": "application/json", "Authorization": `Bearer ${data.get("api_key")}` },
        body: JSON.stringify({ model: data.get("model"), messages, stream: true,
                               stream_options: { include_usage: true } }),
      });
      callId = response.headers.get("x-dheera-ai-call-id");
      if (!response.ok) {
        const body = await response.json().catch(() => ({}));
        throw new Error((body.error && body.error.message) || `HTTP ${response.status}`);
      }
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = "", first = true;
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let cut;
        while ((cut = buffer.indexOf("\n\n")) >= 0) {
          const frame = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
          for (const line of frame.split("\n")) {
            if (!line.startsWith("data:")) continue;
            const payload = line.slice(5).trim();
            if (payload === "[DONE]") continue;
            const chunk = JSON.parse(payload);
            if (chunk.error) throw new Error(chunk.error.message);
            if (chunk.usage) usage = chunk.usage;
            const delta = chunk.choices && chunk.choices[0] && chunk.choices[0].delta;
            if (delta && delta.content) {
              if (first) { stat("p-ttft", `${Math.round(performance.now() - began)} ms`); first = false; }
              text += delta.content;
              reply.textContent = text;
            }
          }
        }
      }
      history.push({ role: "assistant", content: text });
      stat("p-latency", `${Math.round(performance.now() - began)} ms`);
      if (usage) stat("p-tokens", `${usage.prompt_tokens} in · ${usage.completion_tokens} out`);
    } catch (error) {
      history.pop();
      reply.classList.add("failed");
      reply.textContent = error.name === "AbortError" ? `${text} [stopped]` : `Error: ${error.message}`;
      ["p-ttft", "p-latency", "p-tokens"].forEach((id) => {
        if (document.getElementById(id).textContent === "…") stat(id, "—");
      });
    } finally {
      reply.classList.remove("streaming");
      send.disabled = false; stop.disabled = true; controller = null;
    }
    stat("p-cost", callId ? await recordedCost(form.dataset.summary, callId) : "—");
  });
}

// The cost is what the spend log recorded for the call; rows reach the store within about a second.
async function recordedCost(base, callId) {
  for (let attempt = 0; attempt < 10; attempt++) {
    const response = await fetch(`${base}${encodeURIComponent(callId)}.json`, { credentials: "same-origin" });
    if (response.ok && (response.headers.get("content-type") || "").includes("json")) {
      const row = await response.json();
      return row.priced ? `$${row.cost.toFixed(6)}` : "$0 (no price known)";
    }
    await new Promise((resolve) => setTimeout(resolve, 400));
  }
  return "not recorded yet";
}

function bubble(container, role, text) {
  const item = document.createElement("div");
  item.className = `bubble ${role}`;
  const who = document.createElement("span");
  who.className = "who";
  who.textContent = role === "user" ? "You" : "Assistant";
  const body = document.createElement("p");
  body.textContent = text;
  item.append(who, body);
  container.append(item);
  return body;
}
