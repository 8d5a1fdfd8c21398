/* parcours browser tracker: no build step, no dependency (README: Sending events over HTTP).
 *
 *   <script src="http://COLLECTOR/v1/parcours.js"></script>
 *   <script>
 *     const tracker = parcours.init({ url: "http://COLLECTOR", key: "WRITE_KEY" });
 *     tracker.page();                                      // page_view: url, title, referrer
 *     tracker.cart("add_to_cart", { cart_id: "c-1", items: [{ sku: "S", quantity: 1, unit_price: 9 }],
 *                                   value: 9, currency: "EUR" });
 *     await tracker.identify("Jane.Doe@example.com");      // SHA-256 in the browser, never sent plain
 *   </script>
 *
 * Events are batched and sent with fetch (keepalive) every `flushMs` or `maxBatch` events, and
 * with navigator.sendBeacon when the page is hidden or left. The write key identifies the source
 * (web trackers' keys are public by nature: the collector records the source, nothing more).
 */
(function (global) {
  "use strict";

  const CART_ACTIONS = ["add_to_cart", "remove_from_cart", "checkout_started"];

  // The Python SDK's hash_email: trimmed, lower-case, sha256 as lower-case hex.
  async function hashEmail(address) {
    const normalised = String(address).trim().toLowerCase();
    if (!normalised.includes("@")) throw new Error("email: not an e-mail address");
    const bytes = new TextEncoder().encode(normalised);
    const digest = await global.crypto.subtle.digest("SHA-256", bytes);
    return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  function anonymousId(storageKey) {
    try {
      let id = global.localStorage.getItem(storageKey);
      if (!id) {
        id = global.crypto.randomUUID();
        global.localStorage.setItem(storageKey, id);
      }
      return id;
    } catch (e) {
      return global.crypto.randomUUID(); // storage blocked: one id for this page's life
    }
  }

  function init(options) {
    const url = String(options.url).replace(/\/$/, "") + "/v1/touchpoints";
    const key = options.key;
    const flushMs = options.flushMs || 1000;
    const maxBatch = Math.min(options.maxBatch || 50, 500);
    const identities = { anonymous_id: options.anonymousId || anonymousId("parcours_aid") };
    let queue = [];
    let timer = null;

    function track(action, fields) {
      queue.push(Object.assign({
        event_id: global.crypto.randomUUID(),
        occurred_at: new Date().toISOString(),
        channel: "web",
        action: action,
        identities: Object.assign({}, identities),
        attributes: {},
      }, fields || {}));
      if (queue.length >= maxBatch) return flush();
      if (timer === null) timer = global.setTimeout(flush, flushMs);
      return Promise.resolve(null);
    }

    // fetch (keepalive) answers with {accepted, rejected}; a 429/503 puts the batch back.
    async function flush() {
      if (timer !== null) global.clearTimeout(timer);
      timer = null;
      const batch = queue.splice(0, maxBatch);
      if (batch.length === 0) return null;
      let response;
      try {
        response = await global.fetch(url, {
          method: "POST",
          keepalive: true,
          headers: { "Content-Type": "application/json", Authorization: "Bearer " + key },
          body: JSON.stringify({ batch: batch }),
        });
      } catch (e) {
        queue = batch.concat(queue);
        throw e;
      }
      if (response.status === 429 || response.status === 503) {
        queue = batch.concat(queue);
        const wait = Number(response.headers.get("Retry-After") || "1") * 1000;
        timer = global.setTimeout(flush, wait);
      }
      return { status: response.status, body: await response.json() };
    }

    // What is left when the page goes away: a beacon survives the unload, fetch may not.
    function beacon() {
      if (timer !== null) global.clearTimeout(timer);
      timer = null;
      let sent = true;
      while (queue.length > 0 && sent) {
        const batch = queue.slice(0, maxBatch);
        sent = global.navigator.sendBeacon(
          url + "?key=" + encodeURIComponent(key), JSON.stringify({ batch: batch }));
        if (sent) queue.splice(0, batch.length);
      }
      return sent;
    }

    global.addEventListener("pagehide", beacon);
    global.document.addEventListener("visibilitychange", function () {
      if (global.document.visibilityState === "hidden") beacon();
    });

    return {
      identities: identities,
      track: track,
      flush: flush,
      beacon: beacon,
      page: function (attributes) {
        return track("page_view", {
          attributes: Object.assign({
            url: global.location.href,
            title: global.document.title,
            referrer: global.document.referrer,
          }, attributes || {}),
        });
      },
      cart: function (action, cart, attributes) {
        if (!CART_ACTIONS.includes(action)) throw new Error("action: not a cart action: " + action);
        return track(action, { cart: cart, attributes: attributes || {} });
      },
      identify: async function (email, other) {
        if (email) identities.email_sha256 = await hashEmail(email);
        Object.assign(identities, other || {});
        return identities;
      },
    };
  }

  global.parcours = { init: init, hashEmail: hashEmail };
})(window);
