// The storefront: pick a shopper, see recommendations with explanations, act, watch them change.
"use strict";
(() => {
  const { api, el, status } = shoprec;
  let shopper = null;   // a label in demo mode (the token names the shopper), else the shopper id typed
  let byToken = false;  // demo mode: requests leave shopper_id out; the token's shopper is meant
  let impression = null;
  let lastIds = [];
  let counter = 0;
  const $ = (id) => document.getElementById(id);

  function eventId() {
    counter += 1;
    const rand = crypto.getRandomValues(new Uint32Array(2));
    return `web-${Date.now().toString(36)}-${rand[0].toString(36)}${rand[1].toString(36)}-${counter}`;
  }

  function card(item) {
    const badges = el("div", {},
      el("span", { class: "badge rank" }, `#${item.rank}`),
      item.explored ? el("span", { class: "badge explore", title: `propensity ${item.propensity.toFixed(2)}` }, "exploring") : null,
      item.explanation.code === "new_in_category" ? el("span", { class: "badge new" }, "new") : null);
    const price = item.price === null ? "" : `£${item.price.toFixed(2)}`;
    const act = (kind, label, cls) => el("button", { class: cls, onclick: () => act_on(item, kind) }, label);
    return el("div", { class: "rec-card" + (lastIds.includes(item.item_id) ? "" : " fresh"), "data-item": item.item_id },
      badges,
      el("div", { class: "title" }, item.title || item.item_id),
      el("div", { class: "meta" }, [item.category, price].filter(Boolean).join(" · ")),
      el("div", { class: "why" }, item.explanation.text),
      el("div", { class: "actions" },
        act("view", "View", "act-view"), act("cart", "Add to cart", "act-cart"), act("purchase", "Buy", "act-buy")));
  }

  async function refresh() {
    if (!shopper) return;
    const maxPrice = parseFloat($("max-price").value);
    const body = { k: 12, diversity: parseFloat($("diversity").value) };
    if (!byToken) body.shopper_id = shopper;
    if (!$("exploration-auto").checked) body.exploration = parseFloat($("exploration").value);
    if (!Number.isNaN(maxPrice)) body.filters = { max_price: maxPrice };
    try {
      const res = await api("POST", byToken ? "/v1/me/recommendations" : "/v1/recommendations", body);
      impression = res.impression_id;
      const grid = $("recs");
      grid.replaceChildren(...res.items.map(card));
      lastIds = res.items.map((i) => i.item_id);
      grid.dataset.impression = impression;
      $("recs-heading").textContent = `Recommendations for ${shopper}`;
      const cited = new Set(res.items.map((i) => i.explanation.anchor_item_id).filter(Boolean));
      $("recent").replaceChildren(...res.recent.map((r) => el("li", { class: cited.has(r.item_id) ? "cited" : "" },
        el("span", { class: "event" }, r.event), r.title || r.item_id)));
      if (!res.recent.length) $("recent").replaceChildren(el("li", {}, "nothing yet: a new shopper"));
      const x = res.exploration;
      const why = x.overridden ? "fixed for this request" : describeSignals(x.signals);
      $("weight").textContent = `Exploring at weight ${x.weight.toFixed(2)} (${why}); ` +
        `${res.items.filter((i) => i.explored).length} of ${res.items.length} slots explore.` +
        (res.degraded ? " Served by the quicker path: the service is busy." : "");
      status(`${res.items.length} items, policy ${res.policy}`);
    } catch (err) {
      status(err.message, true);
    }
  }

  function describeSignals(s) {
    if (!s || s.history === undefined) return "";
    const said = [];
    if (s.history > 0.5) said.push("we know little of this shopper yet");
    else said.push("we know this shopper well");
    if (s.drift > 0.25) said.push("their recent taste has moved");
    if (s.payoff > 0.2) said.push("exploring has paid off for them");
    else if (s.payoff < -0.2) said.push("exploring has not paid off for them");
    return said.join(", ");
  }

  async function describeModel() {
    try {
      const m = await api("GET", "/v1/model");
      $("model-words").textContent = m.loaded ? m.summary : "No model is served yet.";
    } catch (err) {
      $("model-words").textContent = "";
    }
  }

  async function act_on(item, kind) {
    try {
      const event = { event_id: eventId(), item_id: item.item_id, event: kind, impression_id: impression };
      if (byToken) await api("POST", "/v1/me/events", { events: [event] });
      else await api("POST", "/v1/events", { ...event, shopper_id: shopper });
      const verb = { view: "viewed", cart: "added to cart", purchase: "bought" }[kind];
      $("history").prepend(el("li", {}, `${verb}: ${item.title || item.item_id}`));
      await refresh();
    } catch (err) {
      status(err.message, true);
    }
  }

  const PRIVACY_WORDS = {
    personalised: "Recommendations learn from your views and purchases.",
    private: "Your activity shapes your own recommendations; shared models learn from it only with differential privacy.",
    none: "Nothing you do is stored; recommendations are what is popular.",
  };

  function showPrivacy(choice, deleted) {
    for (const input of document.querySelectorAll('input[name="privacy"]')) input.checked = input.value === choice;
    $("privacy-words").textContent = PRIVACY_WORDS[choice] + (deleted ? ` ${deleted} stored events were deleted.` : "");
  }

  async function readPrivacy() {
    if (!byToken) return;  // with a key, the choice is the shop's backend's to record
    try {
      showPrivacy((await api("GET", "/v1/me/privacy")).choice, 0);
    } catch (err) {
      status(err.message, true);
    }
  }

  async function setPrivacy(choice) {
    try {
      const res = byToken ? await api("PUT", "/v1/me/privacy", { choice })
        : await api("PUT", "/v1/shoppers/privacy", { shopper_id: shopper, choice });
      showPrivacy(res.choice, res.events_deleted);
      await refresh();
    } catch (err) {
      status(err.message, true);
    }
  }

  function start(label) {
    shopper = label;
    $("history").replaceChildren();
    lastIds = [];
    describeModel();
    readPrivacy();
    refresh();
  }

  function choose(id) {  // key mode: the shopper id typed
    if (!id.trim()) return;
    $("shopper-input").value = id.trim();
    start(id.trim());
  }

  async function chooseByToken(request) {  // demo mode: a token for one sample shopper or a new guest
    try {
      const s = await shoprec.session(request);
      byToken = true;
      start(s.label);
    } catch (err) {
      status(err.message, true);
    }
  }

  async function main() {
    const config = await shoprec.init();
    if (config.demo) {
      $("shopper-input").classList.add("hidden");
      $("shopper-go").classList.add("hidden");
      config.sample_shoppers.forEach((label, n) => {
        $("sample-buttons").append(el("button", { class: "sample", onclick: () => chooseByToken({ sample: n }) }, label));
      });
      $("new-shopper").onclick = () => chooseByToken({ guest: true });
    } else {
      $("shopper-go").onclick = () => choose($("shopper-input").value);
      $("shopper-input").onkeydown = (e) => { if (e.key === "Enter") choose($("shopper-input").value); };
      $("new-shopper").onclick = () => choose("guest-" + Math.random().toString(36).slice(2, 8));
    }
    $("exploration-auto").onchange = () => { $("exploration").disabled = $("exploration-auto").checked; refresh(); };
    for (const id of ["exploration", "diversity"]) {
      $(id).oninput = () => { $(`${id}-value`).textContent = parseFloat($(id).value).toFixed(2); };
      $(id).onchange = refresh;
    }
    $("max-price").onchange = refresh;
    for (const input of document.querySelectorAll('input[name="privacy"]')) {
      input.onchange = () => { if (shopper && input.checked) setPrivacy(input.value); };
    }
    status("Choose a shopper, or create a new one.");
  }

  main();
})();
