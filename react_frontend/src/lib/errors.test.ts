import { describe, expect, it } from "vitest";
import { errorFromException, errorFromHttp, errorFromMessage, errorFromStatus, GRADIO_QUEUE_FULL, loginError } from "./errors";

describe("error mapping", () => {
  it("rate limits (HTTP 429) keep the server's words and the wait", () => {
    const message = "Too many image jobs: the limit is 10 per 1 minute. Try again in 42 s.";
    const fromStatus = errorFromStatus({ message, broken: false });
    expect(fromStatus).toMatchObject({ kind: "rate_limit", message, retryAfterS: 42 });
    const fromHttp = errorFromHttp(429, { detail: message }, "42");
    expect(fromHttp).toMatchObject({ kind: "rate_limit", message, retryAfterS: 42 });
    expect(errorFromHttp(429, {}, null).message).toMatch(/Too many requests/);
  });

  it("a full queue (503) says so, whether @gradio/client or the server words it", () => {
    expect(errorFromMessage(`${GRADIO_QUEUE_FULL}. Please try again. `)).toMatchObject({
      kind: "busy",
      title: "Queue full",
      message: "Atelier is busy: the queue is full. Try again shortly.",
    });
    const server = "Atelier is busy: 64 jobs are already waiting. Try again shortly.";
    expect(errorFromHttp(503, { detail: server }, "10")).toMatchObject({ kind: "busy", message: server, retryAfterS: 10 });
  });

  it("validation lists become per-field messages (422 text too)", () => {
    const error = errorFromStatus({
      code: "validation_error",
      message: [
        { is_valid: false, message: "steps must be between 1 and 500, got 0.", parameter_name: "steps" },
        { is_valid: true, message: "", parameter_name: "prompt" },
        { is_valid: false, message: "sampler 'X' is unknown; choose one of: Euler a, Euler.", parameter_name: "sampler" },
      ],
    });
    expect(error.kind).toBe("validation");
    expect(Object.keys(error.fields)).toEqual(["steps", "sampler"]);
    expect(error.message).toContain("steps must be between 1 and 500");
    expect(errorFromHttp(422, { detail: "bad input" }).kind).toBe("validation");
  });

  it("the per-user queue quota is its own kind", () => {
    const error = errorFromStatus({
      message: [{ is_valid: false, parameter_name: "prompt", message: "You already have 4 jobs queued or running (the limit is 4). Wait for one to finish, or stop one." }],
    });
    expect(error.kind).toBe("quota");
    expect(error.fields.prompt).toMatch(/already have 4 jobs/);
  });

  it("login: wrong credentials (400 or 401), throttled attempts (429)", () => {
    expect(loginError(400, { detail: "Incorrect credentials." }).message).toBe("Wrong user name or password.");
    expect(loginError(401, {}).kind).toBe("auth");
    expect(loginError(429, { detail: "Too many login attempts: the limit is 5 per 1 minute. Try again in 30 s." }, "30")).toMatchObject({
      kind: "rate_limit",
      retryAfterS: 30,
    });
  });

  it("connection trouble, missing things, gr.Error text and hidden server errors", () => {
    expect(errorFromStatus({ message: "Connection errored out. ", broken: true }).kind).toBe("connection");
    expect(errorFromException(new TypeError("Failed to fetch")).kind).toBe("connection");
    expect(errorFromStatus({ message: "conversation 9 does not exist." })).toMatchObject({ kind: "not_found", message: "conversation 9 does not exist." });
    expect(errorFromStatus({ message: "An Unexpected Error Occurred!" })).toMatchObject({ kind: "server", title: "Server error" });
    expect(errorFromStatus({ message: "Error" }).message).toMatch(/its log has the details/);
    expect(errorFromStatus({ message: "The image model failed to load: out of memory." })).toMatchObject({
      kind: "server",
      message: "The image model failed to load: out of memory.",
    });
    expect(errorFromException("Log in with your Atelier account.").kind).toBe("auth");
  });

  it("a gr.Error's message is HTML: its escaped words come back as text, markup never as markup", () => {
    const sent = "sampler '&lt;img src=x onerror=alert(1)&gt;' is unknown; write &lt;lora:name:0.8&gt; &amp; retry.";
    expect(errorFromStatus({ message: sent }).message).toBe("sampler '<img src=x onerror=alert(1)>' is unknown; write <lora:name:0.8> & retry.");
    expect(errorFromStatus({ message: "Job 3 failed: <b>bold</b><img src=x onerror=alert(1)> &lt;b&gt;" }).message).toBe(
      "Job 3 failed: bold <b>",
    );
    // A validator's messages are text already: left exactly as sent.
    const validation = errorFromStatus({ message: [{ is_valid: false, parameter_name: "sampler", message: "sampler '&lt;b&gt;' is unknown." }] });
    expect(validation.fields.sampler).toBe("sampler '&lt;b&gt;' is unknown.");
  });
});
