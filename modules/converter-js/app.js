// Example module in JavaScript: converts a temperature reading to another unit.
//
// Each message's JSON body has a number at `field` (default `temperature`) in the unit named by
// its `units-<field>` property (the sensor's), or `from` (default `celsius`) when it has none.
// It goes out on output `converted` with that number in the unit `to` (`celsius`,
// `fahrenheit` or `kelvin`, rounded to 2 decimals), the property saying so, and
// `converter-seen`: messages this instance received since `init` (in memory only). The unit in
// effect is reported to the twin; the `stats` method answers what the module has done, with
// `total`: messages converted ever, kept in the module's state across restarts.

import * as wedge from "../../sdk/js/wedge.js";

const OUTPUT = "converted";

/** Each unit to and from kelvin. */
const UNITS = {
  celsius: { toKelvin: (c) => c + 273.15, fromKelvin: (k) => k - 273.15 },
  fahrenheit: { toKelvin: (f) => ((f - 32) * 5) / 9 + 273.15, fromKelvin: (k) => ((k - 273.15) * 9) / 5 + 32 },
  kelvin: { toKelvin: (k) => k, fromKelvin: (k) => k },
};

function unit(name, what) {
  if (!Object.hasOwn(UNITS, name)) {
    throw new Error(`\`${what}\` must be one of ${Object.keys(UNITS).join(", ")}, got ${JSON.stringify(name)}`);
  }
  return name;
}

class Settings {
  constructor(config) {
    this.field = config.field ?? "temperature";
    if (typeof this.field !== "string") throw new Error("`field` must be a string");
    this.from = unit(config.from ?? "celsius", "from");
    this.to = unit(config.to ?? "fahrenheit", "to");
  }
}

class Converter extends wedge.Module {
  init(config) {
    this.settings = new Settings(config);
    this.seen = 0;
    this.converted = 0;
    this.report();
  }

  onConfig(config) {
    // Parsed in full before anything changes, so a rejected config leaves the old one.
    this.settings = new Settings(config);
    this.report();
  }

  report() {
    try {
      wedge.twin.report({ to: this.settings.to });
    } catch (e) {
      wedge.log.warn(`cannot report the unit to the twin: ${e.message}`);
    }
  }

  onMessage(input, msg) {
    this.seen += 1;
    const { field, from, to } = this.settings;
    const body = msg.json();
    const value = body[field];
    if (typeof value !== "number") {
      throw new Error(`message on input \`${input}\`: field \`${field}\` is not a number: ${JSON.stringify(value)}`);
    }
    const source = unit(msg.properties[`units-${field}`] ?? from, `units-${field}`);
    const kelvin = UNITS[source].toKelvin(value);
    body[field] = Math.round(UNITS[to].fromKelvin(kelvin) * 100) / 100;
    const out = wedge.Message.ofJson(body, { ...msg.properties, [`units-${field}`]: to, "converter-seen": this.seen });
    wedge.telemetry.send(OUTPUT, out);
    this.converted += 1;
    wedge.state.setJson("total", wedge.state.getJson("total", 0) + 1);
  }

  onMethod(name, payload) {
    if (name === "stats") {
      const total = wedge.state.getJson("total", 0);
      return { seen: this.seen, converted: this.converted, total, to: this.settings.to };
    }
    return super.onMethod(name, payload);
  }
}

export const module = wedge.exportModule(Converter);
