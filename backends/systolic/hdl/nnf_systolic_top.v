// nnf_systolic_top: the systolic accelerator (docs/systolic.md): an ROWS x COLS output-stationary
// MAC array with per-column requantization, a lane-parallel vector unit, on-chip memories and a
// controller that runs the program in PROG.  The hardware is the same for every model: a model is
// the four memory images, read with $readmemh at simulation start (file names relative to the
// simulator's working directory; synthesis reads them as BRAM contents).
//
// Ports (docs/systolic.md "Top-level interface"):
//   clk, rst             clock; synchronous active-high reset
//   start                pulse (while idle): run the program from address 0
//   busy, done           running; finished (done holds until the next start)
//   cycle_count          cycles since start, stopped while stalled and at done (nnf_controller)
//   layer_done, layer_id one-cycle pulse at each SYNC, with its count field
//   trace_en, resume     with trace_en high the controller stalls after each SYNC until resume
//   s_axis_*             input words (COLS lanes x IN_W bits); tlast is ignored
//   m_axis_*             output words, tlast on the last word of each OUTPUT
//   dbg_addr, dbg_data   scratchpad read port while idle or stalled: dbg_data = SPAD[dbg_addr]
//                        one cycle after the address (low $clog2(SPAD_DEPTH) bits used)
// Unit latencies and the cycle model are in each unit's header and in backends/systolic/isa.py.
`include "nnf_isa.vh"

module nnf_systolic_top #(
    parameter integer ROWS = 8,
    parameter integer COLS = 8,
    parameter integer IN_W = 8,
    parameter integer ACC_W = 32,
    parameter integer IDX_W = 4,
    parameter integer SPAD_DEPTH = 4096,
    parameter integer WMEM_DEPTH = 8192,
    parameter integer IMEM_DEPTH = 4096,
    parameter integer PMEM_DEPTH = 2048,
    parameter integer PROG_DEPTH = 256,
    parameter PROG_INIT = "prog.hex",
    parameter WMEM_INIT = "wmem.hex",
    parameter IMEM_INIT = "imem.hex",
    parameter PMEM_INIT = "pmem.hex"
) (
    input  wire                 clk,
    input  wire                 rst,
    input  wire                 start,
    output wire                 busy,
    output wire                 done,
    output wire [31:0]          cycle_count,
    output wire                 layer_done,
    output wire [15:0]          layer_id,
    input  wire                 trace_en,
    input  wire                 resume,
    input  wire [COLS*IN_W-1:0] s_axis_tdata,
    input  wire                 s_axis_tvalid,
    output wire                 s_axis_tready,
    input  wire                 s_axis_tlast,
    output wire [COLS*IN_W-1:0] m_axis_tdata,
    output wire                 m_axis_tvalid,
    input  wire                 m_axis_tready,
    output wire                 m_axis_tlast,
    input  wire [31:0]          dbg_addr,
    output wire [COLS*IN_W-1:0] dbg_data
);
    localparam integer WORD_W = COLS * IN_W;
    localparam integer PM_W = COLS * (ACC_W + 22);
    localparam integer SPAD_AW = (SPAD_DEPTH > 1) ? $clog2(SPAD_DEPTH) : 1;
    localparam integer WMEM_AW = (WMEM_DEPTH > 1) ? $clog2(WMEM_DEPTH) : 1;
    localparam integer IMEM_AW = (IMEM_DEPTH > 1) ? $clog2(IMEM_DEPTH) : 1;
    localparam integer PMEM_AW = (PMEM_DEPTH > 1) ? $clog2(PMEM_DEPTH) : 1;
    localparam integer PROG_AW = (PROG_DEPTH > 1) ? $clog2(PROG_DEPTH) : 1;
    localparam integer ROW_W = (COLS > 1) ? $clog2(COLS) : 1;   // GEMM tap tag: the row phase
    localparam integer TAG_W = (ROW_W > 2) ? ROW_W : 2;         // WINDOW tap tag: first/last
    localparam integer RQ_LAT = 7;                              // nnf_requant

    // -- program memory and the instruction on its output -----------------------------------------
    wire                       prog_re, ir_load, ir_decode;
    wire [PROG_AW-1:0]         prog_addr;
    wire [`NNF_INSTR_BITS-1:0] prog_rdata;
    nnf_sdp_ram #(.WIDTH(`NNF_INSTR_BITS), .DEPTH(PROG_DEPTH), .AW(PROG_AW), .INIT(PROG_INIT)) u_prog (
        .clk(clk), .we(1'b0), .waddr({PROG_AW{1'b0}}), .wdata({`NNF_INSTR_BITS{1'b0}}),
        .re(prog_re), .raddr(prog_addr), .rdata(prog_rdata));
    // the instruction registers: ir0 next to the program memory, loaded in FETCH (the controller
    // decodes its opcode in DECODE), and ir, loaded from ir0 in DECODE, which fans out to every
    // unit (they read their fields from their go cycle on)
    reg [`NNF_INSTR_BITS-1:0] ir0, ir;
    always @(posedge clk) begin
        if (ir_load) ir0 <= prog_rdata;
        if (ir_decode) ir <= ir0;
    end

    wire [3:0]  f_op = ir[`NNF_F_OP];
    wire [3:0]  f_sub = ir[`NNF_F_SUB];
    wire        f_a_signed = ir[`NNF_F_A_SIGNED];
    wire        f_b_signed = ir[`NNF_F_B_SIGNED];
    wire        f_w_signed = ir[`NNF_F_W_SIGNED];
    wire        f_shared = ir[`NNF_F_SHARED];
    wire        f_rnd = ir[`NNF_F_RND];
    wire        f_wrap = ir[`NNF_F_WRAP];
    wire        f_out_signed = ir[`NNF_F_OUT_SIGNED];
    wire [4:0]  f_out_bits = ir[`NNF_F_OUT_BITS];
    wire [2:0]  f_idx_bits = ir[`NNF_F_IDX_BITS];
    wire [31:0] f_in_base = ir[`NNF_F_IN_BASE];
    wire [15:0] f_in_h = ir[`NNF_F_IN_H];
    wire [15:0] f_in_w = ir[`NNF_F_IN_W];
    wire [15:0] f_in_ps = ir[`NNF_F_IN_PS];
    wire [15:0] f_b_ps = ir[`NNF_F_B_PS];
    wire [31:0] f_b_base = ir[`NNF_F_B_BASE];
    wire [31:0] f_out_base = ir[`NNF_F_OUT_BASE];
    wire [15:0] f_out_h = ir[`NNF_F_OUT_H];
    wire [15:0] f_out_w = ir[`NNF_F_OUT_W];
    wire [15:0] f_out_ps = ir[`NNF_F_OUT_PS];
    wire [15:0] f_n_words = ir[`NNF_F_N_WORDS];
    wire [7:0]  f_kh = ir[`NNF_F_KH];
    wire [7:0]  f_kw = ir[`NNF_F_KW];
    wire [7:0]  f_sh = ir[`NNF_F_SH];
    wire [7:0]  f_sw = ir[`NNF_F_SW];
    wire [7:0]  f_dh = ir[`NNF_F_DH];
    wire [7:0]  f_dw = ir[`NNF_F_DW];
    wire [7:0]  f_pt = ir[`NNF_F_PT];
    wire [7:0]  f_pl = ir[`NNF_F_PL];
    wire [15:0] f_k_words = ir[`NNF_F_K_WORDS];
    wire [15:0] f_k_step = ir[`NNF_F_K_STEP];
    wire [31:0] f_w_base = ir[`NNF_F_W_BASE];
    wire [31:0] f_p_base = ir[`NNF_F_P_BASE];
    wire [15:0] f_m_a = ir[`NNF_F_M_A];
    wire [15:0] f_m_b = ir[`NNF_F_M_B];
    wire [7:0]  f_n_a = ir[`NNF_F_N_A];
    wire [7:0]  f_n_b = ir[`NNF_F_N_B];
    wire [15:0] f_count = ir[`NNF_F_COUNT];
    wire [31:0] f_lo = ir[`NNF_F_LO];
    wire [31:0] f_hi = ir[`NNF_F_HI];
    wire [31:0] f_lut_offset = ir[`NNF_F_LUT_OFFSET];

    // -- controller -----------------------------------------------------------------------------
    wire go_gemm, go_win, go_elt, go_in, go_out, executing, stalled;
    wire gemm_fin, alu_fin, st_fin;
    nnf_controller #(.PROG_AW(PROG_AW)) u_ctrl (
        .clk(clk), .rst(rst), .start(start), .trace_en(trace_en), .resume(resume),
        .op(ir0[`NNF_F_OP]), .sync_id(ir0[`NNF_F_COUNT]), .unit_fin(gemm_fin | alu_fin | st_fin),
        .prog_re(prog_re), .prog_addr(prog_addr), .ir_load(ir_load), .ir_decode(ir_decode), .busy(busy), .done(done),
        .cycle_count(cycle_count), .layer_done(layer_done), .layer_id(layer_id),
        .go_gemm(go_gemm), .go_win(go_win), .go_elt(go_elt), .go_in(go_in), .go_out(go_out),
        .executing(executing), .stalled(stalled));

    wire is_gemm = (f_op == `NNF_OP_GEMM);
    wire is_out = (f_op == `NNF_OP_OUTPUT);
    wire is_in = (f_op == `NNF_OP_INPUT);

    // -- memories -------------------------------------------------------------------------------
    // port A: every write, and the reads of the OUTPUT stream and the debug port (to the pins);
    // port B: the reads of GEMM and the ALU, into a register of their own (nnf_tdp_ram)
    wire                  spad_we, spad_re, spad_re_a;
    wire [SPAD_AW-1:0]    spad_waddr, spad_raddr, spad_addr_a;
    wire [WORD_W-1:0]     spad_wdata, spad_rdata, spad_rdata_a;
    nnf_tdp_ram #(.WIDTH(WORD_W), .DEPTH(SPAD_DEPTH), .AW(SPAD_AW)) u_spad (
        .clk(clk), .we_a(spad_we), .re_a(spad_re_a), .addr_a(spad_addr_a), .wdata_a(spad_wdata),
        .rdata_a(spad_rdata_a), .re_b(spad_re), .addr_b(spad_raddr), .rdata_b(spad_rdata));
    // GEMM and ALU take the word registered twice: the first register has no other load, so it
    // can sit next to the block RAMs (a block RAM's clock-to-out is most of the cycle), the second
    // fans out to the row loaders and the ALU lanes
    reg [WORD_W-1:0] spad_q0, spad_q;
    always @(posedge clk) begin
        spad_q0 <= spad_rdata;
        spad_q <= spad_q0;
    end

    wire [WMEM_AW-1:0]    wmem_raddr;
    wire [WORD_W-1:0]     wmem_rdata;
    nnf_sdp_ram #(.WIDTH(WORD_W), .DEPTH(WMEM_DEPTH), .AW(WMEM_AW), .INIT(WMEM_INIT)) u_wmem (
        .clk(clk), .we(1'b0), .waddr({WMEM_AW{1'b0}}), .wdata({WORD_W{1'b0}}),
        .re(1'b1), .raddr(wmem_raddr), .rdata(wmem_rdata));

    wire [IMEM_AW-1:0]    imem_raddr;
    wire [COLS*IDX_W-1:0] imem_rdata;
    nnf_sdp_ram #(.WIDTH(COLS * IDX_W), .DEPTH(IMEM_DEPTH), .AW(IMEM_AW), .INIT(IMEM_INIT)) u_imem (
        .clk(clk), .we(1'b0), .waddr({IMEM_AW{1'b0}}), .wdata({COLS*IDX_W{1'b0}}),
        .re(1'b1), .raddr(imem_raddr), .rdata(imem_rdata));

    wire                  pmem_re, gemm_pmem_re, alu_pmem_re;
    wire [PMEM_AW-1:0]    pmem_raddr, gemm_pmem_raddr, alu_pmem_raddr;
    wire [PM_W-1:0]       pmem_rdata;
    nnf_sdp_ram #(.WIDTH(PM_W), .DEPTH(PMEM_DEPTH), .AW(PMEM_AW), .INIT(PMEM_INIT)) u_pmem (
        .clk(clk), .we(1'b0), .waddr({PMEM_AW{1'b0}}), .wdata({PM_W{1'b0}}),
        .re(pmem_re), .raddr(pmem_raddr), .rdata(pmem_rdata));
    // the PMEM word registered next to the block RAMs, once for all its users (tile parameters,
    // codebook, lookup tables): the block RAMs' outputs each have one load
    reg [PM_W-1:0] pmem_q;
    always @(posedge clk) pmem_q <= pmem_rdata;

    // -- the tap address generator, shared by GEMM and WINDOW ------------------------------------
    wire             g_tv, g_tpv, w_tv;
    wire [25:0]      g_ihp, g_iwp, w_ihp, w_iwp;
    wire [15:0]      g_kdh, g_kdw, g_cw, w_kdh, w_kdw, w_cw;
    wire [ROW_W-1:0] g_row;
    wire [1:0]       w_tag;
    // the tap unit's and port B's source, taken at go (the sequencers request from go + 1): decoded
    // from the instruction within the cycle, f_op -> is_gemm -> the ihp mux -> the tap unit's adder
    // -> its multiplier was the critical path (88.3 MHz)
    reg tap_gemm, rd_tap;
    always @(posedge clk) begin
        if (rst) begin
            tap_gemm <= 1'b0; rd_tap <= 1'b0;
        end else if (go_gemm | go_win | go_elt) begin
            tap_gemm <= go_gemm; rd_tap <= go_gemm | go_win;
        end
    end
    wire [TAG_W-1:0] t_tag = tap_gemm ? {{(TAG_W - ROW_W){1'b0}}, g_row} : {{(TAG_W - 2){1'b0}}, w_tag};
    wire [SPAD_AW-1:0] ag_addr;
    wire               ag_inb, ag_v;
    wire [TAG_W-1:0]   ag_tag;
    nnf_tap_agen #(.AW(SPAD_AW), .TAG_W(TAG_W)) u_agen (
        .clk(clk), .v(tap_gemm ? g_tv : w_tv), .pv(tap_gemm ? g_tpv : 1'b1),
        .ihp(tap_gemm ? g_ihp : w_ihp), .iwp(tap_gemm ? g_iwp : w_iwp),
        .kdh(tap_gemm ? g_kdh : w_kdh), .kdw(tap_gemm ? g_kdw : w_kdw), .cw(tap_gemm ? g_cw : w_cw),
        .tag(t_tag), .in_h(f_in_h), .in_w(f_in_w), .in_ps(f_in_ps), .in_base(f_in_base),
        .addr(ag_addr), .inb_o(ag_inb), .v_o(ag_v), .tag_o(ag_tag));

    // -- GEMM -----------------------------------------------------------------------------------
    wire [COLS*ACC_W-1:0] g_acc;
    wire [COLS*17-1:0]    g_mult;
    wire [COLS*6-1:0]     g_shift;
    wire                  gemm_we, gemm_active;
    wire [SPAD_AW-1:0]    gemm_waddr;
    nnf_gemm #(.ROWS(ROWS), .COLS(COLS), .IN_W(IN_W), .ACC_W(ACC_W), .IDX_W(IDX_W),
               .SPAD_AW(SPAD_AW), .WMEM_AW(WMEM_AW), .IMEM_AW(IMEM_AW), .PMEM_AW(PMEM_AW),
               .RQ_LAT(RQ_LAT), .TAG_W(ROW_W)) u_gemm (
        .clk(clk), .rst(rst), .go(go_gemm),
        .a_signed(f_a_signed), .w_signed(f_w_signed), .shared(f_shared), .idx_bits(f_idx_bits),
        .out_h(f_out_h), .out_w(f_out_w), .out_ps(f_out_ps), .out_base(f_out_base),
        .n_words(f_n_words), .k_words(f_k_words), .k_step(f_k_step),
        .kh(f_kh), .kw(f_kw), .sh(f_sh), .sw(f_sw), .dh(f_dh), .dw(f_dw), .pt(f_pt), .pl(f_pl),
        .w_base(f_w_base), .p_base(f_p_base),
        .t_v(g_tv), .t_pv(g_tpv), .t_ihp(g_ihp), .t_iwp(g_iwp), .t_kdh(g_kdh), .t_kdw(g_kdw),
        .t_cw(g_cw), .t_row(g_row),
        .ag_v(ag_v), .ag_inb(ag_inb), .ag_row(ag_tag[ROW_W-1:0]), .spad_rdata(spad_q),
        .wmem_raddr(wmem_raddr), .wmem_rdata(wmem_rdata), .imem_raddr(imem_raddr),
        .imem_rdata(imem_rdata), .pmem_re(gemm_pmem_re), .pmem_raddr(gemm_pmem_raddr),
        .pmem_rdata(pmem_q), .col_acc(g_acc), .col_mult(g_mult), .col_shift(g_shift),
        .spad_we(gemm_we), .spad_waddr(gemm_waddr), .active(gemm_active), .fin(gemm_fin));

    // -- ALU (WINDOW, ELTWISE) --------------------------------------------------------------------
    wire [SPAD_AW-1:0]    alu_raddr, alu_waddr;
    wire [WORD_W-1:0]     alu_wdata;
    wire                  alu_we, alu_active;
    wire                  a_rq_v, a_rq_pair;
    wire [COLS*ACC_W-1:0] a_rq_acc, rq_prod;
    wire [COLS*17-1:0]    a_rq_mult;
    wire [5:0]            a_rq_shift;
    wire [COLS*IN_W-1:0]  rq_y;
    wire [COLS-1:0]       rq_v;
    nnf_alu #(.COLS(COLS), .IN_W(IN_W), .ACC_W(ACC_W), .SPAD_AW(SPAD_AW), .PMEM_AW(PMEM_AW),
              .RQ_LAT(RQ_LAT)) u_alu (
        .clk(clk), .rst(rst), .go_win(go_win), .go_elt(go_elt),
        .sub(f_sub), .a_signed(f_a_signed), .b_signed(f_b_signed), .in_base(f_in_base),
        .in_ps(f_in_ps), .b_base(f_b_base), .b_ps(f_b_ps), .out_base(f_out_base), .out_ps(f_out_ps),
        .out_h(f_out_h), .out_w(f_out_w), .n_words(f_n_words),
        .kh(f_kh), .kw(f_kw), .sh(f_sh), .sw(f_sw), .dh(f_dh), .dw(f_dw), .pt(f_pt), .pl(f_pl),
        .m_a(f_m_a), .m_b(f_m_b), .n_a(f_n_a), .n_b(f_n_b), .p_base(f_p_base), .lut_offset(f_lut_offset),
        .t_v(w_tv), .t_ihp(w_ihp), .t_iwp(w_iwp), .t_kdh(w_kdh), .t_kdw(w_kdw), .t_cw(w_cw), .t_tag(w_tag),
        .ag_v(ag_v), .ag_inb(ag_inb), .ag_tag(ag_tag[1:0]),
        .spad_raddr(alu_raddr), .spad_rdata(spad_q),
        .pmem_re(alu_pmem_re), .pmem_raddr(alu_pmem_raddr), .pmem_rdata(pmem_q),
        .rq_in_valid(a_rq_v), .rq_acc(a_rq_acc), .rq_mult(a_rq_mult), .rq_shift(a_rq_shift),
        .rq_pair(a_rq_pair), .rq_out_valid(rq_v[0]), .rq_y(rq_y), .rq_prod(rq_prod),
        .spad_we(alu_we), .spad_waddr(alu_waddr), .spad_wdata(alu_wdata),
        .active(alu_active), .fin(alu_fin));

    // the PMEM read registered once after the GEMM/ALU select: that select, fed by the GEMM's
    // codebook/parameter select, drove the address pins of every PMEM block (96.1 MHz, 9.2 of
    // its 10.4 ns routing); both units issue their reads a cycle early for it
    reg                pmem_re_q;
    reg [PMEM_AW-1:0]  pmem_raddr_q;
    always @(posedge clk) begin
        pmem_re_q <= gemm_active ? gemm_pmem_re : alu_pmem_re;
        pmem_raddr_q <= gemm_active ? gemm_pmem_raddr : alu_pmem_raddr;
    end
    assign pmem_re = pmem_re_q;
    assign pmem_raddr = pmem_raddr_q;

    // -- the requant units (one per column / lane) and the GEMM deskew -----------------------------
    wire [WORD_W-1:0] rq_y_deskew;
    genvar j;
    generate
        for (j = 0; j < COLS; j = j + 1) begin : g_col
            nnf_requant #(.IN_W(IN_W), .ACC_W(ACC_W)) u_rq (
                .clk(clk), .in_valid(is_gemm ? 1'b0 : a_rq_v),
                .acc(is_gemm ? g_acc[j*ACC_W +: ACC_W] : a_rq_acc[j*ACC_W +: ACC_W]),
                .mult(is_gemm ? g_mult[j*17 +: 17] : a_rq_mult[j*17 +: 17]),
                .shift(is_gemm ? g_shift[j*6 +: 6] : a_rq_shift),
                .pair(~is_gemm & a_rq_pair),
                .rnd(f_rnd), .wrap(f_wrap), .out_signed(f_out_signed), .out_bits(f_out_bits),
                .lo(f_lo), .hi(f_hi),
                .out_valid(rq_v[j]), .y(rq_y[j*IN_W +: IN_W]), .prod(rq_prod[j*ACC_W +: ACC_W]));
            // column j finishes j cycles after column 0: delay it to the last column's time
            nnf_delay #(.WIDTH(IN_W), .DEPTH(COLS - 1 - j)) u_deskew (
                .clk(clk), .d(rq_y[j*IN_W +: IN_W]), .q(rq_y_deskew[j*IN_W +: IN_W]));
        end
    endgenerate

    // -- INPUT / OUTPUT -----------------------------------------------------------------------------
    wire                st_we, st_active;
    wire [SPAD_AW-1:0]  st_waddr, st_raddr;
    wire [WORD_W-1:0]   st_wdata;
    nnf_stream #(.WORD_W(WORD_W), .SPAD_AW(SPAD_AW)) u_stream (
        .clk(clk), .rst(rst), .go_in(go_in), .go_out(go_out), .count(f_count),
        .in_base(f_in_base), .out_base(f_out_base),
        .s_axis_tdata(s_axis_tdata), .s_axis_tvalid(s_axis_tvalid), .s_axis_tready(s_axis_tready),
        .m_axis_tdata(m_axis_tdata), .m_axis_tvalid(m_axis_tvalid), .m_axis_tready(m_axis_tready),
        .m_axis_tlast(m_axis_tlast),
        .spad_raddr(st_raddr), .spad_rdata(spad_rdata_a),
        .spad_we(st_we), .spad_waddr(st_waddr), .spad_wdata(st_wdata),
        .active(st_active), .fin(st_fin));

    // -- the scratchpad's ports: port A writes whichever unit writes, else reads for OUTPUT or the
    //    debug port (no instruction writes while OUTPUT runs; the debug port is read while idle or
    //    stalled); port B reads for GEMM/WINDOW (the tap unit) or ELTWISE ------------------------
    assign spad_raddr = rd_tap ? ag_addr : alu_raddr;
    assign spad_re = 1'b1;
    assign spad_we = gemm_we | alu_we | st_we;
    // port A's address and data are selected by the instruction (registers), not by which unit's
    // write enable is high: only the running instruction's unit writes, and only while it executes
    // (a unit's write enable to the select of every scratchpad block's address was the critical path)
    assign spad_waddr = is_gemm ? gemm_waddr : (is_in ? st_waddr : alu_waddr);
    assign spad_wdata = is_gemm ? rq_y_deskew : (is_in ? st_wdata : alu_wdata);
    assign spad_addr_a = ~executing ? dbg_addr[SPAD_AW-1:0] : (is_out ? st_raddr : spad_waddr);
    assign spad_re_a = 1'b1;  // reads every cycle: OUTPUT latches only the words it issued (nnf_stream)
    assign dbg_data = spad_rdata_a;

    wire unused_ok = &{1'b0, s_axis_tlast, stalled, alu_active, st_active, rq_v[COLS-1:0],
                       ir[`NNF_INSTR_BITS-1:0], dbg_addr};
endmodule
