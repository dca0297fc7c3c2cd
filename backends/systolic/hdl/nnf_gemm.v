// nnf_gemm: the GEMM datapath around nnf_array: weight and parameter fetch, the codebook of
// shared weights, the row loaders, the per-column requantization parameters and the write
// sequencer.  The requantization units themselves (nnf_requant, shared with the ALU) and the
// deskew sit in the top: col_acc/col_mult/col_shift go out, the deskewed words come back as
// the scratchpad write data for spad_we/spad_waddr.
//
// Every memory's read data lands in a register before any logic (block RAM clock-to-out is
// most of an ECP5 cycle).  Pipeline, relative to the issue cycle b of a k-step (nnf_gemm_seq):
//   b+5   scratchpad read address (nnf_tap_agen); PMEM address of the tile's {bias, M, n}
//         word (k-step 0), to the top's PMEM address register
//   b+6   scratchpad data; WMEM/IMEM address; the PMEM address at the memory
//   b+7   the scratchpad word in its register next to the block RAM (in the top); WMEM/IMEM
//         data; PMEM data
//   b+8   the scratchpad word in the register that fans out (spad_rdata, from the top); the
//         row loader takes it (zeros for padding / missing pixels); the WMEM/IMEM data
//         registers; the PMEM word in its register (pmem_rdata, from the top)
//   b+9   row operand lane 0 and the k-step's weight word (after the codebook lookup) at the
//         array (X = 9); the PMEM word (which holds on the memory's output until the next
//         tile's read) is staged: the biases for the array, M/n for the requant units
//   then  row i, column j finishes at b+X+3+i+j (tile s-1's sums when tile s's first arrives;
//         the PE's multiply has operand and product registers), the column's requant unit
//         (RQ_LAT cycles) and the deskew (COLS-1-j) align row i of every column at
//         b+X+2+COLS+RQ_LAT+i, when it is written.
// The requantization parameters of tile s-1 must stay at column j's requant input while tile
// s starts, so M/n are staged twice (s_ms -> sp_ms -> sp_ms_d) and each column loads its own
// lane when `first` passes its top (col_first, two cycles later).
//
// Drain (fixed, docs/systolic.md "Cycle model"): fin is high DRAIN_TAIL cycles after the flush
// wavefront, in the cycle of the last write: DRAIN_TAIL = X + COLS + RQ_LAT + ROWS + 1.
module nnf_gemm #(
    parameter integer ROWS = 4,
    parameter integer COLS = 4,
    parameter integer IN_W = 8,
    parameter integer ACC_W = 32,
    parameter integer IDX_W = 4,
    parameter integer SPAD_AW = 12,
    parameter integer WMEM_AW = 13,
    parameter integer IMEM_AW = 12,
    parameter integer PMEM_AW = 11,
    parameter integer RQ_LAT = 7,
    parameter integer TAG_W = 2
) (
    input  wire                  clk,
    input  wire                  rst,
    input  wire                  go,
    // instruction fields
    input  wire                  a_signed,
    input  wire                  w_signed,
    input  wire                  shared,
    input  wire [2:0]            idx_bits,
    input  wire [15:0]           out_h,
    input  wire [15:0]           out_w,
    input  wire [15:0]           out_ps,
    input  wire [31:0]           out_base,
    input  wire [15:0]           n_words,
    input  wire [15:0]           k_words,
    input  wire [15:0]           k_step,
    input  wire [7:0]            kh,
    input  wire [7:0]            kw,
    input  wire [7:0]            sh,
    input  wire [7:0]            sw,
    input  wire [7:0]            dh,
    input  wire [7:0]            dw,
    input  wire [7:0]            pt,
    input  wire [7:0]            pl,
    input  wire [31:0]           w_base,
    input  wire [31:0]           p_base,
    // tap requests to nnf_tap_agen, and what comes back 5 cycles later
    output wire                  t_v,
    output wire                  t_pv,
    output wire [25:0]           t_ihp,
    output wire [25:0]           t_iwp,
    output wire [15:0]           t_kdh,
    output wire [15:0]           t_kdw,
    output wire [15:0]           t_cw,
    output wire [TAG_W-1:0]      t_row,
    input  wire                  ag_v,
    input  wire                  ag_inb,
    input  wire [TAG_W-1:0]      ag_row,
    input  wire [COLS*IN_W-1:0]  spad_rdata,     // registered twice: the word read 3 cycles before
    // static memories
    output wire [WMEM_AW-1:0]    wmem_raddr,
    input  wire [COLS*IN_W-1:0]  wmem_rdata,
    output wire [IMEM_AW-1:0]    imem_raddr,
    input  wire [COLS*IDX_W-1:0] imem_rdata,
    output wire                  pmem_re,
    output wire [PMEM_AW-1:0]    pmem_raddr,
    input  wire [COLS*(ACC_W+22)-1:0] pmem_rdata,   // registered: the word read 3 cycles before (the top's address register, then 2)
    // to the requant units (column j: lane j)
    output wire [COLS*ACC_W-1:0] col_acc,
    output wire [COLS*17-1:0]    col_mult,
    output wire [COLS*6-1:0]     col_shift,
    // scratchpad write (data: the deskewed requant outputs)
    output wire                  spad_we,
    output wire [SPAD_AW-1:0]    spad_waddr,
    output wire                  active,
    output wire                  fin
);
    localparam integer X = 9;                       // issue -> operands at the array
    localparam integer TOKEN_DELAY = X + COLS + RQ_LAT + 1;
    localparam integer DRAIN_TAIL = X + COLS + RQ_LAT + ROWS + 1;
    localparam integer LB = ACC_W + 22;             // PMEM lane: {shift[5:0], mult[15:0], bias}
    localparam integer NCB = 1 << IDX_W;
    localparam [15:0] ROWS16 = ROWS[15:0];

    // -- sequencer --------------------------------------------------------------------------
    wire        cb_re, k0, flush;
    wire [31:0] cb_addr, w_addr, p_addr;
    wire [7:0]  cb_e;
    nnf_gemm_seq #(.ROWS(ROWS), .COLS(COLS), .TAG_W(TAG_W)) u_seq (
        .clk(clk), .rst(rst), .go(go),
        .out_h(out_h), .out_w(out_w), .n_words(n_words), .k_words(k_words), .k_step(k_step),
        .kh(kh), .kw(kw), .sh(sh), .sw(sw), .dh(dh), .dw(dw), .pt(pt), .pl(pl),
        .w_base(w_base), .p_base(p_base), .shared(shared), .idx_bits(idx_bits),
        .cb_re(cb_re), .cb_addr(cb_addr), .cb_e(cb_e),
        .t_v(t_v), .t_pv(t_pv), .t_ihp(t_ihp), .t_iwp(t_iwp), .t_kdh(t_kdh), .t_kdw(t_kdw),
        .t_cw(t_cw), .t_row(t_row),
        .w_addr(w_addr), .k0(k0), .p_addr(p_addr), .flush(flush));

    reg run;       // from go to fin
    reg draining;  // after the flush wavefront
    reg [15:0] dcnt;
    assign fin = (flush & (DRAIN_TAIL == 0)) | (draining & ({16'd0, dcnt} == DRAIN_TAIL));
    assign active = run;
    always @(posedge clk) begin
        if (rst) begin
            run <= 1'b0; draining <= 1'b0; dcnt <= 16'd0;
        end else begin
            if (go) run <= 1'b1;
            else if (fin) run <= 1'b0;
            if (flush) begin
                draining <= 1'b1; dcnt <= 16'd1;
            end else if (draining) begin
                dcnt <= dcnt + 16'd1;
                if (fin) draining <= 1'b0;
            end
        end
    end

    // -- weights, parameters: 6 cycles to the memory address (the tap unit's 5, and one for the
    //    scratchpad word's second register) ---------------------------------------------------
    wire [31:0] w_addr_d;
    wire [31:0] p_addr_d;
    wire        k0_d6, k0_d8, token;
    nnf_delay #(.WIDTH(32), .DEPTH(6)) u_wad (.clk(clk), .d(w_addr), .q(w_addr_d));
    // the top registers the PMEM read address once (1 cycle) and the word comes registered (2
    // cycles), so the read leaves here at X - 4
    nnf_delay #(.WIDTH(32), .DEPTH(X - 4)) u_pad (.clk(clk), .d(p_addr), .q(p_addr_d));
    // k0_d5, k0_d6, k0_d8: k-step 0 at the PMEM read (X - 4, X - 3 at the memory) and at the array (X)
    wire k0_d5;
    nnf_delay #(.WIDTH(1), .DEPTH(X - 4)) u_k5 (.clk(clk), .d(k0), .q(k0_d5));
    nnf_delay #(.WIDTH(1), .DEPTH(1)) u_k6 (.clk(clk), .d(k0_d5), .q(k0_d6));
    nnf_delay #(.WIDTH(1), .DEPTH(3)) u_k8 (.clk(clk), .d(k0_d6), .q(k0_d8));
    nnf_delay #(.WIDTH(1), .DEPTH(TOKEN_DELAY - X)) u_tok (.clk(clk), .d(k0_d8), .q(token));
    assign wmem_raddr = w_addr_d[WMEM_AW-1:0];
    assign imem_raddr = w_addr_d[IMEM_AW-1:0];
    assign pmem_re = cb_re | k0_d5;
    assign pmem_raddr = cb_re ? cb_addr[PMEM_AW-1:0] : p_addr_d[PMEM_AW-1:0];

    // -- codebook (shared weights): entry e is lane 0's low IN_W bits of its PMEM word -------
    reg [NCB*IN_W-1:0] cbook;
    reg                cb_we0, cb_we1, cb_we;  // entry cb_e's word: read at cb_re, here 3 cycles later
    reg [7:0]          cb_wi0, cb_wi1, cb_wi;
    always @(posedge clk) begin
        cb_we0 <= cb_re; cb_we1 <= cb_we0; cb_we <= cb_we1;
        cb_wi0 <= cb_e; cb_wi1 <= cb_wi0; cb_wi <= cb_wi1;
        if (cb_we && ({24'd0, cb_wi} < NCB)) cbook[cb_wi[IDX_W-1:0]*IN_W +: IN_W] <= pmem_rdata[IN_W-1:0];
    end
    wire [7:0]       idx_mask8 = (8'd1 << idx_bits) - 8'd1;
    wire [IDX_W-1:0] idx_mask = idx_mask8[IDX_W-1:0];

    // -- the weight word at the array's top (b+8), from the registered memory data (b+7) -------
    reg [COLS*IN_W-1:0]  w_word, wm_q;
    reg [COLS*IDX_W-1:0] im_q;
    always @(posedge clk) begin
        wm_q <= wmem_rdata;
        im_q <= imem_rdata;
    end
    genvar j;
    generate
        for (j = 0; j < COLS; j = j + 1) begin : g_lookup
            wire [IDX_W-1:0] idx = im_q[j*IDX_W +: IDX_W] & idx_mask;
            always @(posedge clk)
                w_word[j*IN_W +: IN_W] <= shared ? cbook[idx*IN_W +: IN_W] : wm_q[j*IN_W +: IN_W];
        end
    endgenerate

    // -- the tile's parameter word: biases for the array, M/n for the previous tile ----------
    reg [COLS*ACC_W-1:0] s_bias;
    reg [COLS*22-1:0]    s_ms, sp_ms, sp_ms_d;
    wire [COLS*ACC_W-1:0] pm_bias;
    wire [COLS*22-1:0]    pm_ms;
    generate
        for (j = 0; j < COLS; j = j + 1) begin : g_pm
            assign pm_bias[j*ACC_W +: ACC_W] = pmem_rdata[j*LB +: ACC_W];
            assign pm_ms[j*22 +: 22] = pmem_rdata[j*LB + ACC_W +: 22];
        end
    endgenerate
    always @(posedge clk) begin
        if (k0_d8) begin
            s_bias <= pm_bias;
            s_ms <= pm_ms;
            sp_ms <= s_ms;
        end
        sp_ms_d <= sp_ms;
    end

    // -- row loaders: row i takes its word in phase i and shifts one lane a cycle ------------
    wire                ld_v, ld_inb;
    wire [TAG_W-1:0]    ld_row;
    nnf_delay #(.WIDTH(TAG_W + 2), .DEPTH(3)) u_ld (.clk(clk), .d({ag_v & run, ag_inb, ag_row}),
                                                   .q({ld_v, ld_inb, ld_row}));
    wire [ROWS*IN_W-1:0] a_rows;
    genvar i;
    generate
        for (i = 0; i < ROWS; i = i + 1) begin : g_row
            reg [COLS*IN_W-1:0] sr;
            always @(posedge clk) begin
                if (ld_v && ({{(32 - TAG_W){1'b0}}, ld_row} == i))
                    sr <= ld_inb ? spad_rdata : {COLS*IN_W{1'b0}};
                else
                    sr <= sr >> IN_W;
            end
            assign a_rows[i*IN_W +: IN_W] = sr[IN_W-1:0];
        end
    endgenerate

    // -- the array ----------------------------------------------------------------------------
    wire [COLS-1:0] col_first;
    nnf_array #(.ROWS(ROWS), .COLS(COLS), .IN_W(IN_W), .ACC_W(ACC_W)) u_array (
        .clk(clk), .a_signed(a_signed), .w_signed(w_signed), .a_rows(a_rows), .w_word(w_word),
        .first(k0_d8), .bias_word(s_bias), .col_res(col_acc), .col_first(col_first));

    generate
        for (j = 0; j < COLS; j = j + 1) begin : g_ms
            reg [21:0] ms;
            always @(posedge clk) if (col_first[j]) ms <= sp_ms_d[j*22 +: 22];
            assign col_mult[j*17 +: 17] = {1'b0, ms[15:0]};
            assign col_shift[j*6 +: 6] = ms[21:16];
        end
    endgenerate

    // -- write sequencer: ROWS words per tile, from the token before the first of them --------
    // The loop-end conditions are registers, each computed a cycle ahead from registers (an
    // increment, a compare and a mux in series missed 100 MHz): wr_owl = (wr_ow == out_w-1),
    // wr_ohge = (wr_oh >= out_h), wr_ohge1 = (wr_oh+1 >= out_h), wr_c1 = (wr_cnt == 1),
    // wr_nz = (wr_cnt != 0).  owm2 = out_w-2 and ohm2 = out_h-2 are taken at go.
    reg        seen;               // the first token is the first tile's start (nothing to write)
    reg [15:0] wr_cnt;             // rows left in the tile being written
    reg [15:0] wr_oh, wr_ow;
    reg [31:0] wr_addr, wr_nb;     // out_base + m*out_ps + n; out_base + n
    reg        wr_owl, wr_ohge, wr_ohge1, wr_c1, wr_nz;
    reg        z_owl, z_ohge, z_ohge1;   // the flags of pixel 0
    reg [15:0] owm2;
    reg [17:0] ohm2;               // signed
    wire        wr_new_n = wr_c1 & (wr_owl ? wr_ohge1 : wr_ohge);
    wire        start_tile = token & seen;
    always @(posedge clk) begin
        if (go) begin
            seen <= 1'b0; wr_cnt <= 16'd0; wr_oh <= 16'd0; wr_ow <= 16'd0;
            wr_addr <= out_base; wr_nb <= out_base;
            wr_c1 <= 1'b0; wr_nz <= 1'b0;
            z_owl <= (out_w == 16'd1); z_ohge <= (out_h == 16'd0); z_ohge1 <= (out_h <= 16'd1);
            wr_owl <= (out_w == 16'd1); wr_ohge <= (out_h == 16'd0); wr_ohge1 <= (out_h <= 16'd1);
            owm2 <= out_w - 16'd2;
            ohm2 <= {2'b0, out_h} - 18'd2;
        end else begin
            if (token) seen <= 1'b1;
            wr_cnt <= start_tile ? ROWS16 : (wr_nz ? wr_cnt - 16'd1 : 16'd0);
            wr_c1 <= start_tile ? (ROWS16 == 16'd1) : (wr_nz & (wr_cnt == 16'd2));
            wr_nz <= start_tile | (wr_nz & ~wr_c1);
            if (wr_nz) begin
                if (wr_new_n) begin
                    wr_oh <= 16'd0; wr_ow <= 16'd0;
                    wr_owl <= z_owl; wr_ohge <= z_ohge; wr_ohge1 <= z_ohge1;
                    wr_nb <= wr_nb + 32'd1; wr_addr <= wr_nb + 32'd1;
                end else begin
                    wr_oh <= wr_owl ? wr_oh + 16'd1 : wr_oh;
                    wr_ow <= wr_owl ? 16'd0 : wr_ow + 16'd1;
                    wr_owl <= wr_owl ? z_owl : (wr_ow == owm2);
                    wr_ohge <= wr_owl ? wr_ohge1 : wr_ohge;
                    wr_ohge1 <= wr_owl ? ($signed({2'b0, wr_oh}) >= $signed(ohm2)) : wr_ohge1;
                    wr_addr <= wr_addr + {16'd0, out_ps};
                end
            end
        end
    end
    assign spad_we = run & wr_nz & ~wr_ohge;
    assign spad_waddr = wr_addr[SPAD_AW-1:0];
endmodule
