#!/usr/bin/env node
// Drives an official Node.js solver client against another host (captcha-queue's gateway, or its
// simulator) and prints one JSON line with what the client returned. Run by tests/node_client.py;
// the docs' Node section (docs/gateway.md) shows the same base-URL override.
//
//   CAPTCHA_API_KEY=<key> node solve.js [--client 2captcha|anticaptcha] [--base-url URL]
//       [--poll-ms N] [--timeout-s N] ACTION [ARG...]
//
// The key comes from the environment only (never argv: a command line is visible to every user of
// the machine). The base URL comes from --base-url or CAPTCHA_BASE_URL.
//
// Clients (both pinned in package-lock.json, installed with `npm ci`):
//   2captcha     @2captcha/captcha-solver, in.php/res.php. It has no option for the host: its `in`
//                and `res` getters return the hard-coded 2captcha.com URLs, so a subclass overrides
//                them (the same two getters every request goes through).
//   anticaptcha  @antiadmin/anticaptchaofficial, the JSON API (createTask/getTaskResult/getBalance).
//                It posts to a hard-coded https://api.anti-captcha.com/<method> with axios, so an
//                axios request interceptor (axios' public API, on the module instance the client
//                itself loads) rewrites that prefix to the base URL.
//
// Actions:
//   balance                  -> {"ok": true, "balance": 10.0}
//   solve METHOD PARAMS      -> {"ok": true, "id": "...", "answer": ...}
//       2captcha:    METHOD is a Solver method (recaptcha, cloudflareTurnstile, imageCaptcha, ...) and
//                    PARAMS a JSON object of its params, e.g. '{"pageurl": ..., "googlekey": ...}'
//       anticaptcha: METHOD is a module function (solveRecaptchaV2Proxyless, solveImage, ...) and
//                    PARAMS a JSON array of its positional arguments
//   report-good ID / report-bad ID          (2captcha: res.php reportgood/reportbad)
//   solve ... --report correct|incorrect    (anticaptcha: reports the task it just solved)
// An error the client raised prints {"ok": false, "error": "<the code the client saw>"} and exits 1;
// a usage error exits 2; --timeout-s passing first prints {"ok": false, "error": "TIMEOUT"}, exit 3.
"use strict";

const USAGE =
  "usage: CAPTCHA_API_KEY=<key> node solve.js [--client 2captcha|anticaptcha] [--base-url URL] " +
  "[--poll-ms N] [--timeout-s N] [--report correct|incorrect] ACTION [ARG...]";

class UsageError extends Error {}

function emit(document, code) {
  process.stdout.write(JSON.stringify(document) + "\n", () => process.exit(code));
}

function usage(message) {
  process.stderr.write(`solve.js: ${message}\n${USAGE}\n`);
  emit({ ok: false, error: "USAGE", message }, 2);
}

function parseArgs(argv) {
  const options = {
    client: "2captcha",
    baseUrl: process.env.CAPTCHA_BASE_URL || "",
    pollMs: 200,
    timeoutS: 50,
    report: "",
    positional: [],
  };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) throw new UsageError(`${arg} needs a value`);
      i += 1;
      return argv[i];
    };
    if (arg === "--client") options.client = value();
    else if (arg === "--base-url") options.baseUrl = value();
    else if (arg === "--poll-ms") options.pollMs = Number(value());
    else if (arg === "--timeout-s") options.timeoutS = Number(value());
    else if (arg === "--report") options.report = value();
    else if (arg.startsWith("--")) throw new UsageError(`unknown option ${arg}`);
    else options.positional.push(arg);
  }
  if (!["2captcha", "anticaptcha"].includes(options.client)) {
    throw new UsageError(`--client must be 2captcha or anticaptcha, not ${options.client}`);
  }
  if (!/^https?:\/\/[^/]+/.test(options.baseUrl)) {
    throw new UsageError("a base URL (--base-url or CAPTCHA_BASE_URL) of the form http(s)://host:port is needed");
  }
  options.baseUrl = options.baseUrl.replace(/\/+$/, "");
  for (const [name, number] of [["--poll-ms", options.pollMs], ["--timeout-s", options.timeoutS]]) {
    if (!Number.isFinite(number) || number <= 0) throw new UsageError(`${name} must be a positive number`);
  }
  if (!["", "correct", "incorrect"].includes(options.report)) {
    throw new UsageError("--report must be correct or incorrect");
  }
  if (options.positional.length === 0) throw new UsageError("no ACTION given");
  return options;
}

function parseJson(text, what) {
  try {
    return JSON.parse(text);
  } catch (exc) {
    throw new UsageError(`${what} is not valid JSON: ${exc.message}`);
  }
}

// ---- @2captcha/captcha-solver (in.php/res.php) ----------------------------------------------------

function twoCaptcha(options, key) {
  const { Solver } = require("@2captcha/captcha-solver");

  // The only way to another host: the client reads its endpoints from these two getters.
  class GatewaySolver extends Solver {
    get in() {
      return `${options.baseUrl}/in.php`;
    }

    get res() {
      return `${options.baseUrl}/res.php`;
    }
  }

  const solver = new GatewaySolver(key, options.pollMs);
  const [action, ...args] = options.positional;
  return async () => {
    if (action === "balance" && args.length === 0) return { balance: await solver.balance() };
    if ((action === "report-good" || action === "report-bad") && args.length === 1) {
      const answer = await (action === "report-good" ? solver.goodReport(args[0]) : solver.badReport(args[0]));
      return { id: args[0], answer };
    }
    if (action === "solve" && args.length === 2) {
      const [method, text] = args;
      const params = parseJson(text, "PARAMS");
      if (typeof solver[method] !== "function" || method.startsWith("_") || method === "pollResponse") {
        throw new UsageError(`the 2captcha Solver has no method ${method}`);
      }
      if (params === null || typeof params !== "object" || Array.isArray(params)) {
        throw new UsageError("PARAMS must be a JSON object for the 2captcha client");
      }
      const solved = await solver[method](params);
      return { id: String(solved.id), answer: solved.data, document: solved };
    }
    throw new UsageError(`unknown action for the 2captcha client: ${options.positional.join(" ")}`);
  };
}

function twoCaptchaError(exc) {
  // APIError carries the code the service answered in .err (its .message is a prose rewrite).
  // balance() wraps its own APIError in a catch-all that rethrows with the whole answer body as the
  // code ('{"status":0,"request":"ERROR_WRONG_USER_KEY"}'): the code is taken out of that body and
  // the body kept as `raw`.
  if (!exc || exc.name !== "APIError") return null;
  const found = { error: String(exc.err), message: String(exc.message) };
  try {
    const body = JSON.parse(found.error);
    if (body && typeof body === "object" && typeof body.request === "string") {
      return { ...found, error: body.request, raw: found.error };
    }
  } catch {
    // not a JSON body: .err is the code itself
  }
  return found;
}

// ---- @antiadmin/anticaptchaofficial (JSON API) ----------------------------------------------------

const ANTI_CAPTCHA_API = "https://api.anti-captcha.com/";

function antiCaptcha(options, key) {
  // The client's own `require('axios')` resolves to this same module instance (one copy in
  // node_modules, pinned by the lock), so the interceptor sees every request the client sends.
  const axios = require("axios");
  axios.interceptors.request.use((config) => {
    if (typeof config.url === "string" && config.url.startsWith(ANTI_CAPTCHA_API)) {
      config.url = `${options.baseUrl}/${config.url.slice(ANTI_CAPTCHA_API.length)}`;
    }
    config.timeout = 20000; // the client computes NaN here (this.connectionTimeout is undefined)
    return config;
  });
  const ac = require("@antiadmin/anticaptchaofficial");
  ac.setAPIKey(key);
  ac.shutUp();
  ac.settings.firstAttemptWaitingInterval = options.pollMs / 1000;
  ac.settings.normalWaitingInterval = options.pollMs / 1000;
  const [action, ...args] = options.positional;
  return async () => {
    if (action === "balance" && args.length === 0) return { balance: await ac.getBalance() };
    if (action === "solve" && args.length === 2) {
      const [method, text] = args;
      const params = parseJson(text, "PARAMS");
      if (!/^solve[A-Za-z0-9]+$/.test(method) || typeof ac[method] !== "function") {
        throw new UsageError(`the anti-captcha module has no function ${method}`);
      }
      if (!Array.isArray(params)) throw new UsageError("PARAMS must be a JSON array for the anticaptcha client");
      const answer = await ac[method](...params);
      const result = { id: String(ac.session.taskId), answer };
      if (options.report === "correct") result.report = await ac.reportCorrectRecaptcha();
      else if (options.report === "incorrect") result.report = await ac.reportIncorrectRecaptcha();
      return result;
    }
    throw new UsageError(`unknown action for the anticaptcha client: ${options.positional.join(" ")}`);
  };
}

function antiCaptchaError(exc) {
  // The client throws the errorCode string of an errorId > 0 answer.
  if (typeof exc === "string") return { error: exc };
  return null;
}

// ---- main -------------------------------------------------------------------------------------------

function main() {
  let options;
  let run;
  const key = process.env.CAPTCHA_API_KEY || "";
  try {
    options = parseArgs(process.argv.slice(2));
    if (!key) throw new UsageError("CAPTCHA_API_KEY is not set");
    run = options.client === "2captcha" ? twoCaptcha(options, key) : antiCaptcha(options, key);
  } catch (exc) {
    usage(exc.message);
    return;
  }
  // Only this script writes to stdout: whatever a client logs goes to stderr.
  console.log = (...parts) => process.stderr.write(parts.join(" ") + "\n");
  const timer = setTimeout(() => emit({ ok: false, error: "TIMEOUT" }, 3), options.timeoutS * 1000);
  run().then(
    (result) => {
      clearTimeout(timer);
      emit({ ok: true, client: options.client, ...result }, 0);
    },
    (exc) => {
      clearTimeout(timer);
      const known = options.client === "2captcha" ? twoCaptchaError(exc) : antiCaptchaError(exc);
      if (known !== null) {
        emit({ ok: false, client: options.client, ...known }, 1);
        return;
      }
      const message = exc && exc.message ? exc.message : String(exc);
      // A usage mistake found late (bad METHOD/PARAMS) is still a usage error.
      if (exc instanceof UsageError) {
        usage(message);
        return;
      }
      emit({ ok: false, client: options.client, error: "CLIENT_ERROR", message }, 1);
    },
  );
}

main();
