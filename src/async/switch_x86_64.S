/*
 * switch_x86_64.S — the coroutine context switch for x86-64 (System V).
 *
 *   void weft__coro_switch(void **save_sp, void *to_sp);
 *
 * Pushes the callee-saved registers the ABI makes us keep (rbx, rbp,
 * r12-r15) plus MXCSR and the x87 control word (both are "callee-saved"
 * control state), stores the resulting stack pointer in *save_sp, loads
 * to_sp and pops the same frame from there. Everything else is
 * caller-saved, so the C caller has already spilled what it needs.
 *
 * Frame, from the saved stack pointer up (64 bytes, keeps 16-byte alignment):
 *   +0 MXCSR (4) +4 x87 CW (2) +6 pad (2)  +8 r15  +16 r14  +24 r13  +32 r12
 *   +40 rbx  +48 rbp  +56 return address
 *
 * A new coroutine's stack is prepared by coro.c with this frame: r12 = the
 * argument, r13 = the entry function, return address = weft__coro_boot.
 */
#if defined(__x86_64__)
        .text
        .globl  weft__coro_switch
        .hidden weft__coro_switch
        .type   weft__coro_switch, @function
        .p2align 4
weft__coro_switch:
        .cfi_startproc
        pushq   %rbp
        pushq   %rbx
        pushq   %r12
        pushq   %r13
        pushq   %r14
        pushq   %r15
        subq    $8, %rsp
        stmxcsr (%rsp)
        fnstcw  4(%rsp)
        movq    %rsp, (%rdi)
        movq    %rsi, %rsp
        ldmxcsr (%rsp)
        fldcw   4(%rsp)
        addq    $8, %rsp
        popq    %r15
        popq    %r14
        popq    %r13
        popq    %r12
        popq    %rbx
        popq    %rbp
        ret
        .cfi_endproc
        .size   weft__coro_switch, .-weft__coro_switch

/* First code a coroutine runs: entry(arg), which never returns. rbp = 0 and
 * an undefined return address end debugger backtraces here. */
        .globl  weft__coro_boot
        .hidden weft__coro_boot
        .type   weft__coro_boot, @function
        .p2align 4
weft__coro_boot:
        .cfi_startproc
        .cfi_undefined rip
        xorl    %ebp, %ebp
        movq    %r12, %rdi
        callq   *%r13
        ud2
        .cfi_endproc
        .size   weft__coro_boot, .-weft__coro_boot
#endif
/* No executable stack. ARM assemblers read '@' as a comment, hence '%'. */
#if defined(__arm__) || defined(__aarch64__)
        .section .note.GNU-stack,"",%progbits
#else
        .section .note.GNU-stack,"",@progbits
#endif
