/** `verify --loader`'s option parsing (measure parses its own KVM options). */
import { assertEquals, assertThrows } from "./assert.ts";
import { takeKvmOptions } from "../lib/cli/kvm_commands.ts";
import { UsageError } from "../lib/errors.ts";

Deno.test("takeKvmOptions() takes verify's --loader, --vcpus and --cpu and leaves the rest", () => {
  assertEquals(
    takeKvmOptions("verify", ["--loader=qemu-kvm", "f.igvm", "--vcpus", "4", "--cpu", "milan"]),
    { kvm: { loader: "qemu-kvm", vcpus: 4, cpuSignature: 0x00A00F11 }, rest: ["f.igvm"] },
  );
  assertEquals(takeKvmOptions("verify", ["--loader", "ch-kvm", "f.igvm", "--json"]), {
    kvm: { loader: "ch-kvm", vcpus: 1, cpuSignature: 0 },
    rest: ["f.igvm", "--json"],
  });
  assertEquals(takeKvmOptions("verify", ["f.igvm", "--json"]), { rest: ["f.igvm", "--json"] });
  assertEquals(takeKvmOptions("inspect", ["--loader", "x"]), { rest: ["--loader", "x"] });
});

Deno.test("takeKvmOptions() refuses what verify --loader cannot use", () => {
  const refused: [string[], string][] = [
    [["--matrix", "f"], "verify: --matrix is a measure option"],
    [["--vcpus", "2", "f"], "verify: --vcpus and --cpu go with --loader"],
    [["--loader", "hyperv", "f"], '--loader: expected qemu-kvm, ch-kvm, openvmm-kvm, got "hyperv"'],
    [["--loader", "qemu-kvm", "--loader", "ch-kvm"], "--loader is given twice"],
    [["f", "--cpu"], "--cpu needs a value"],
    [["--loader", "qemu-kvm", "--vcpus", "1,2", "f"], '--vcpus: one count, got "1,2"'],
    [
      ["--loader", "openvmm-kvm", "--vcpus", "2", "f"],
      "--loader openvmm-kvm with more than one vCPU needs --cpu",
    ],
  ];
  for (const [args, message] of refused) {
    assertThrows(() => takeKvmOptions("verify", args), UsageError, message);
  }
});
