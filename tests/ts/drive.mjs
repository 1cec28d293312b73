// Drive one session through the official TypeScript SDK: node drive.mjs SPEC_JSON.
// SPEC: {cli, prompt, interruptOn, hookTimeout, hooks, mcp, control, onAbort}; prints a
// JSON summary of what the SDK delivered. Used by tests/test_ts_interop.py.
import { createSdkMcpServer, query, tool } from "@anthropic-ai/claude-agent-sdk";
import { z } from "zod";

const spec = JSON.parse(process.argv[2]);
const seen = { types: [], results: [], hookInputs: [], permissionCalls: [], errors: [] };
let ended;
const done = new Promise((resolve) => (ended = resolve));
let release;
const interrupted = new Promise((resolve) => (release = resolve));

// A callback still pending when the CLI cancels it: it never settles ("hang", what an
// SDK user normally writes), or it rejects on its abort signal ("reject").
function pending(signal) {
  return new Promise((_, reject) => {
    if (spec.onAbort === "reject") {
      signal.addEventListener("abort", () => reject(new Error("aborted by the CLI")));
    }
  });
}

async function onHook(input, toolUseID, { signal }) {
  seen.hookInputs.push(input);
  if (spec.interruptOn === "hook") release();
  if (spec.slowHook && input.hook_event_name === "PreToolUse") return pending(signal);
  return input.hook_event_name === "PreToolUse" ? { continue: true } : {};
}

async function canUseTool(name, input, { signal }) {
  seen.permissionCalls.push([name, input]);
  if (spec.interruptOn === "permission") {
    release();
    return pending(signal);
  }
  return { behavior: "allow", updatedInput: input };
}

async function* prompt() {
  if (spec.prompt !== null) {
    yield {
      type: "user",
      message: { role: "user", content: spec.prompt },
      parent_tool_use_id: null,
      session_id: "",
    };
  }
  await done; // stdin stays open until the session is over
}

const echo = tool("echo", "Echo the given text back", { text: z.string() }, async (args) => ({
  content: [{ type: "text", text: `echo: ${args.text}` }],
}));

const hooks = {};
if (spec.hooks) {
  hooks.PreToolUse = [{ hooks: [onHook], timeout: spec.hookTimeout ?? undefined }];
  if (spec.hooks === "pre+post") hooks.PostToolUse = [{ hooks: [onHook] }];
}

const q = query({
  prompt: prompt(),
  options: {
    pathToClaudeCodeExecutable: spec.cli,
    hooks,
    canUseTool,
    mcpServers: spec.mcp ? { [spec.mcp]: createSdkMcpServer({ name: spec.mcp, tools: [echo] }) } : {},
    stderr: () => {},
  },
});

const reader = (async () => {
  for await (const message of q) {
    seen.types.push(message.subtype ? `${message.type}/${message.subtype}` : message.type);
    if (spec.interruptOn === "init" && message.type === "system") release();
    if (message.type === "result") {
      seen.results.push({ subtype: message.subtype, session_id: message.session_id });
      ended();
    }
  }
})();

try {
  if (spec.control) {
    seen.control = [await q.setPermissionMode("plan"), await q.mcpServerStatus()].map(
      (x) => typeof x,
    );
    ended();
  }
  if (spec.interruptOn) {
    await interrupted;
    await q.interrupt();
  }
  await reader;
} catch (error) {
  seen.errors.push(String(error && error.message ? error.message : error));
  ended();
}
process.stdout.write(`${JSON.stringify(seen)}\n`);
process.exit(0);
