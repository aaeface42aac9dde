# gdb script: one line per vCPU thread of a running (or dumped) QEMU with
# what a stalled guest needs looked at first: halted, parked by the cvm
# plugin (patch 0019), woken by any interrupt (0013), the pending
# interrupt_request bits, RIP, CR0, the APIC's wait for a SIPI and whether
# work is queued for the vCPU's thread.
#
#   gdb -p "$(pgrep -f qemu-system-x86_64)" -batch -x scripts/lib/vcpu-states.py
#
# Needs the patched QEMU's debug info (scripts/build-qemu builds with it).
import gdb

# Frames that hold the vCPU in a variable named `cpu`.
VCPU_FRAMES = ("qemu_wait_io_event", "cpu_exec_loop", "cpu_exec", "mttcg_cpu_thread_fn")


def vcpu_line(cpu):
    x86 = cpu.cast(gdb.lookup_type("X86CPU").pointer())
    env = x86["env"]
    apic = x86["apic_state"]
    wait_for_sipi = "-"
    if int(apic) != 0:
        common = apic.cast(gdb.lookup_type("APICCommonState").pointer())
        wait_for_sipi = int(common["wait_for_sipi"])
    return (
        "vcpu %d: halted=%d parked=%d irq-wakes=%d interrupt_request=%#x "
        "rip=%#x cr0=%#x wait_for_sipi=%s work-queued=%s exception=%d"
        % (
            int(cpu["cpu_index"]),
            int(cpu["halted"]),
            int(env["cvm_parked"]),
            int(env["cvm_halt_irq_wakes"]),
            int(cpu["interrupt_request"]),
            int(env["eip"]),
            int(env["cr"][0]),
            wait_for_sipi,
            "yes" if int(cpu["work_list"]["sqh_first"]) != 0 else "no",
            int(cpu["exception_index"]),
        )
    )


gdb.execute("set pagination off")
lines = []
for thread in gdb.selected_inferior().threads():
    thread.switch()
    frame = gdb.newest_frame()
    while frame is not None:
        if frame.name() in VCPU_FRAMES:
            frame.select()
            try:
                lines.append(vcpu_line(gdb.parse_and_eval("cpu")))
            except gdb.error as e:
                lines.append("thread %d: %s" % (thread.num, e))
            break
        frame = frame.older()
for line in sorted(lines):
    print(line)
