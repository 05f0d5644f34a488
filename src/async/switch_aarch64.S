/*
 * switch_aarch64.S — the coroutine context switch for AArch64 (AAPCS64).
 *
 *   void weft__coro_switch(void **save_sp, void *to_sp);
 *
 * Saves the callee-saved registers (x19-x28, the frame pointer x29, the link
 * register x30, the low halves d8-d15 of v8-v15) and FPCR on the current
 * stack, stores sp in *save_sp, switches sp to to_sp and restores the same
 * frame from there; `ret` then goes to the restored x30.
 *
 * Frame, from the saved sp up (176 bytes, 16-byte aligned):
 *   +0 x19,x20  +16 x21,x22  +32 x23,x24  +48 x25,x26  +64 x27,x28
 *   +80 x29,x30  +96 d8,d9  +112 d10,d11  +128 d12,d13  +144 d14,d15
 *   +160 FPCR  +168 pad
 *
 * A new coroutine's frame (coro.c): x19 = the argument, x20 = the entry
 * function, x30 = weft__coro_boot, x29 = 0.
 */
#if defined(__aarch64__)
        .text
        .globl  weft__coro_switch
        .hidden weft__coro_switch
        .type   weft__coro_switch, %function
        .p2align 4
weft__coro_switch:
        .cfi_startproc
        sub     sp, sp, #176
        stp     x19, x20, [sp, #0]
        stp     x21, x22, [sp, #16]
        stp     x23, x24, [sp, #32]
        stp     x25, x26, [sp, #48]
        stp     x27, x28, [sp, #64]
        stp     x29, x30, [sp, #80]
        stp     d8, d9, [sp, #96]
        stp     d10, d11, [sp, #112]
        stp     d12, d13, [sp, #128]
        stp     d14, d15, [sp, #144]
        mrs     x9, fpcr
        str     x9, [sp, #160]
        mov     x9, sp
        str     x9, [x0]
        mov     sp, x1
        ldp     x19, x20, [sp, #0]
        ldp     x21, x22, [sp, #16]
        ldp     x23, x24, [sp, #32]
        ldp     x25, x26, [sp, #48]
        ldp     x27, x28, [sp, #64]
        ldp     x29, x30, [sp, #80]
        ldp     d8, d9, [sp, #96]
        ldp     d10, d11, [sp, #112]
        ldp     d12, d13, [sp, #128]
        ldp     d14, d15, [sp, #144]
        ldr     x9, [sp, #160]
        msr     fpcr, x9
        add     sp, sp, #176
        ret
        .cfi_endproc
        .size   weft__coro_switch, .-weft__coro_switch

/* First code a coroutine runs: entry(arg), which never returns. */
        .globl  weft__coro_boot
        .hidden weft__coro_boot
        .type   weft__coro_boot, %function
        .p2align 4
weft__coro_boot:
        .cfi_startproc
        .cfi_undefined x30
        mov     x29, #0
        mov     x0, x19
        blr     x20
        brk     #0
        .cfi_endproc
        .size   weft__coro_boot, .-weft__coro_boot
#endif
/* No executable stack. ARM assemblers read '@' as a comment, hence '%'. */
#if defined(__arm__) || defined(__aarch64__)
        .section .note.GNU-stack,"",%progbits
#else
        .section .note.GNU-stack,"",@progbits
#endif
