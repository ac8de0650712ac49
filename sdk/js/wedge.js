// The wedge SDK for JavaScript modules.
//
// A wedge module is a WebAssembly component built with componentize-js against wit/wedge.wit
// (world `edge-module`). With this file a module is one class:
//
//     import * as wedge from "../../sdk/js/wedge.js";
//
//     class Doubler extends wedge.Module {
//       onMessage(input, msg) {
//         wedge.telemetry.sendJson("out", msg.json() * 2);
//       }
//     }
//
//     export const module = wedge.exportModule(Doubler);
//
// `exportModule` returns the object componentize-js exports as the WIT interface `module`. It
// keeps the module's one long-lived object: `init` makes it, every later call goes to it. Any
// exception a handler throws becomes the call's error (the host logs and counts it) and the
// module keeps running, as a Rust module returning `Err` does.
//
// componentize-js resolves relative imports when it builds, so the SDK is imported by path.

import * as witLog from "wedge:edge/log@0.1.0";
import * as witState from "wedge:edge/state@0.1.0";
import * as witTelemetry from "wedge:edge/telemetry@0.1.0";
import * as witTwin from "wedge:edge/twin@0.1.0";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** One message: its body (bytes), application properties (string -> string) and the IoT Hub
 * system properties `contentType` / `contentEncoding` (undefined leaves them unset). */
export class Message {
  constructor(body = new Uint8Array(), properties = {}, contentType, contentEncoding) {
    this.body = typeof body === "string" ? encoder.encode(body) : body;
    this.properties = { ...properties };
    this.contentType = contentType;
    this.contentEncoding = contentEncoding;
  }

  /** A UTF-8 JSON body with content type application/json. */
  static ofJson(value, properties = {}) {
    return new Message(JSON.stringify(value), properties, "application/json", "utf-8");
  }

  /** The body parsed as JSON; the error says what is wrong with it. */
  json() {
    try {
      return JSON.parse(this.text());
    } catch (e) {
      throw new Error(`body is not JSON: ${e.message}`);
    }
  }

  /** The body as UTF-8 text. */
  text() {
    return decoder.decode(this.body);
  }

  /** This message with one more application property (replacing one of the same key). */
  withProperty(key, value) {
    const properties = { ...this.properties, [String(key)]: String(value) };
    return new Message(this.body, properties, this.contentType, this.contentEncoding);
  }

  static fromWit(msg) {
    return new Message(msg.body, Object.fromEntries(msg.properties), msg.contentType, msg.contentEncoding);
  }

  toWit() {
    return {
      body: this.body,
      properties: Object.entries(this.properties).map(([k, v]) => [String(k), String(v)]),
      contentType: this.contentType,
      contentEncoding: this.contentEncoding,
    };
  }
}

/** `telemetry.send` refused the message; it was accepted nowhere. `kind` is `no-route`
 * (`detail`: the output), `too-large` (`detail`: the limit in bytes), `full` (try again later)
 * or `invalid` (`detail`: why). */
export class SendError extends Error {
  constructor(kind, detail) {
    super(detail === undefined ? kind : `${kind}: ${detail}`);
    this.name = "SendError";
    this.kind = kind;
    this.detail = detail;
  }
}

/** A direct method's answer with a status other than 200. */
export class Response {
  constructor(status, value) {
    this.status = status;
    this.value = value;
  }
}

/** The value a failed import returned (componentize-js throws it with the WIT error as
 * `payload`). */
function witError(e) {
  return e !== null && typeof e === "object" && "payload" in e ? e.payload : e;
}

/** The `SendError` of a refused `send` or `send-batch` (a WIT variant: `tag`, `val`). */
function sendError(e) {
  const error = witError(e);
  return new SendError(error.tag, error.val);
}

export const telemetry = {
  /** Sends `msg` on `output`; returns once every destination accepted it (`$upstream`: on
   * disk). Throws `SendError` when it was accepted nowhere. */
  send(output, msg) {
    try {
      witTelemetry.send(output, msg.toWit());
    } catch (e) {
      throw sendError(e);
    }
  },
  /** Sends several messages in order, all or none. */
  sendBatch(output, msgs) {
    try {
      witTelemetry.sendBatch(output, msgs.map((m) => m.toWit()));
    } catch (e) {
      throw sendError(e);
    }
  },
  /** Sends `value` as a JSON message. */
  sendJson(output, value, properties = {}) {
    this.send(output, Message.ofJson(value, properties));
  },
};

/** Log records: kept in the module's log ring (`wedge logs`) and the host's log, at the
 * module's rate. `console.log` goes to the host's log too (as stdout). */
export const log = Object.fromEntries(
  ["trace", "debug", "info", "warn", "error"].map((level) => [level, (message) => witLog.log(level, String(message))]),
);

/** The module's durable state, kept across restarts within its quota. */
export const state = {
  /** The bytes stored under `key` (a Uint8Array), or undefined. */
  get(key) {
    return witState.get(key) ?? undefined;
  },
  /** Stores `value` (bytes or a string); returns once it is on disk. */
  set(key, value) {
    const bytes = typeof value === "string" ? encoder.encode(value) : value;
    try {
      witState.set(key, bytes);
    } catch (e) {
      throw new Error(`state.set(${JSON.stringify(key)}): ${witError(e)}`);
    }
  },
  delete(key) {
    witState.delete(key);
  },
  /** The JSON value under `key`, or `fallback` when there is none. */
  getJson(key, fallback) {
    const bytes = this.get(key);
    return bytes === undefined ? fallback : JSON.parse(decoder.decode(bytes));
  },
  setJson(key, value) {
    this.set(key, JSON.stringify(value));
  },
};

/** The module's twin: desired properties (its configuration) and reported properties. */
export const twin = {
  desired() {
    return JSON.parse(witTwin.desired());
  },
  /** Merges `patch` (an object) into the module's reported properties. */
  report(patch) {
    try {
      witTwin.report(JSON.stringify(patch));
    } catch (e) {
      throw new Error(`twin.report: ${witError(e)}`);
    }
  },
};

/** A wedge module. The host calls one method at a time; one object lives from `init` until
 * the host restarts or replaces the module. Override what the module needs. Throwing from
 * `init` stops the module; from `onConfig` it rejects the new configuration (the old one stays
 * active: validate everything before changing `this`). */
export class Module {
  init(config) {}
  onConfig(config) {}
  onMessage(input, msg) {}
  onTick() {}
  /** Answers a direct method (`payload` parsed); the return value is the JSON answer with
   * status 200, or a `Response` for another status. */
  onMethod(name, payload) {
    return new Response(404, { error: `method \`${name}\` is not implemented` });
  }
}

/** One line for the host: the error's name and message (a thrown non-Error as text). */
function describe(e) {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

function parseConfig(text) {
  const value = JSON.parse(text);
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new Error(`configuration is not a JSON object: ${text.slice(0, 100)}`);
  }
  return value;
}

/** The `module` export for `cls` (a subclass of `Module`). */
export function exportModule(cls) {
  if (!(cls.prototype instanceof Module)) {
    throw new TypeError("wedge.exportModule takes a subclass of wedge.Module");
  }
  let instance;
  // Every failure becomes the call's error, a string as the WIT says, never a trap.
  const call = (f) => {
    try {
      return f();
    } catch (e) {
      throw describe(e);
    }
  };
  const module = () => {
    if (instance === undefined) throw "module not initialised";
    return instance;
  };
  return {
    init(config) {
      // A failing `init` leaves the module uninitialised, not half-replaced.
      instance = undefined;
      instance = call(() => {
        const m = new cls();
        m.init(parseConfig(config));
        return m;
      });
    },
    onConfig(config) {
      const m = module();
      call(() => m.onConfig(parseConfig(config)));
    },
    onMessage(input, msg) {
      const m = module();
      call(() => m.onMessage(input, Message.fromWit(msg)));
    },
    onTick() {
      const m = module();
      call(() => m.onTick());
    },
    onMethod(name, payload) {
      const m = module();
      return call(() => {
        const result = m.onMethod(name, payload.trim() === "" ? null : JSON.parse(payload));
        if (result instanceof Response) {
          return { status: result.status, payload: JSON.stringify(result.value ?? null) };
        }
        return { status: 200, payload: JSON.stringify(result ?? null) };
      });
    },
  };
}
