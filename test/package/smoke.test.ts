// Owns: packaging foundation smoke test: the packed tarball installs into a fresh app and every entry imports with plain node.
import { describe, expect, it } from "vitest";
import { createApp, packTarball } from "../kit/package.ts";

describe("packed tarball", () => {
  it("installs into a fresh app where plain node imports the core entry", { timeout: 300_000 }, async () => {
    const started = Date.now();
    await packTarball();
    const packedMs = Date.now() - started;
    const app = await createApp(undefined, { dependencies: ["hono"] });
    const installedMs = Date.now() - started - packedMs;
    const result = await app.run(process.execPath, ["--input-type=module", "-e", "const m = await import('session-replication'); console.log(typeof m.createCluster)"]);
    console.log(`pack ${packedMs} ms, install ${installedMs} ms`);
    expect(result.stderr).toBe("");
    expect(result.stdout.trim()).toBe("function");
  });
});
