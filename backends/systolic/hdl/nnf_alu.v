// nnf_alu: the lane-parallel vector unit for WINDOW and ELTWISE (COLS lanes = one word).
//
// WINDOW (taps from nnf_window_seq through nnf_tap_agen): each lane accumulates the max (MAX:
// out-of-bounds taps skipped; a window with none gives the lowest value, which saturates to lo)
// or the sum (SUM; COPY is the sum of its one tap, padding 0) of its taps, one tap a cycle, and
// hands the word to the requant units after the last tap: rq(v, m_a, n_a) for SUM, rq(v, 1, 0)
// for MAX and COPY.
// ELTWISE (reads from nnf_eltwise_seq): REQUANT rq(a, m_a, n_a); CLIP rq(a, 1, 0); ADD
// a*m_a >> n_a then b*m_b >> n_b with `pair` (the requant unit adds them before saturating);
// MUL a*b through the requant multiplier (first pass: acc = a, mult = b, shift 0), whose product
// comes back 3 cycles later for rq(a*b, m_a, n_a) (second pass, in the slot the next word's first
// pass leaves free); LUT: per lane, the low IN_W bits of PMEM[p_base + a - lut_offset] (one lane a
// cycle), written without the requant units.
//
// Latency, from the cycle a word/tap is on spad_rdata (registered twice in the top: 3 cycles after
// its address): the lane value register one cycle later is the requant input (valid rq_in_valid),
// the requant output RQ_LAT cycles after that is written (MUL: 3 cycles more).  The fixed drain:
// fin is high D_TAIL cycles after the last issue (the longest path, MUL's, with every sub-op):
// WINDOW 9 + RQ_LAT, ELTWISE 7 + RQ_LAT.
module nnf_alu #(
    parameter integer COLS = 4,
    parameter integer IN_W = 8,
    parameter integer ACC_W = 32,
    parameter integer SPAD_AW = 12,
    parameter integer PMEM_AW = 11,
    parameter integer RQ_LAT = 7
) (
    input  wire                  clk,
    input  wire                  rst,
    input  wire                  go_win,
    input  wire                  go_elt,
    // instruction fields
    input  wire [3:0]            sub,
    input  wire                  a_signed,
    input  wire                  b_signed,
    input  wire [31:0]           in_base,
    input  wire [15:0]           in_ps,
    input  wire [31:0]           b_base,
    input  wire [15:0]           b_ps,
    input  wire [31:0]           out_base,
    input  wire [15:0]           out_ps,
    input  wire [15:0]           out_h,
    input  wire [15:0]           out_w,
    input  wire [15:0]           n_words,
    input  wire [7:0]            kh,
    input  wire [7:0]            kw,
    input  wire [7:0]            sh,
    input  wire [7:0]            sw,
    input  wire [7:0]            dh,
    input  wire [7:0]            dw,
    input  wire [7:0]            pt,
    input  wire [7:0]            pl,
    input  wire [15:0]           m_a,
    input  wire [15:0]           m_b,
    input  wire [7:0]            n_a,
    input  wire [7:0]            n_b,
    input  wire [31:0]           p_base,
    input  wire [31:0]           lut_offset,
    // WINDOW tap requests to nnf_tap_agen, and what comes back 5 cycles later
    output wire                  t_v,
    output wire [25:0]           t_ihp,
    output wire [25:0]           t_iwp,
    output wire [15:0]           t_kdh,
    output wire [15:0]           t_kdw,
    output wire [15:0]           t_cw,
    output wire [1:0]            t_tag,
    input  wire                  ag_v,
    input  wire                  ag_inb,
    input  wire [1:0]            ag_tag,
    // scratchpad (ELTWISE reads), PMEM (LUT reads)
    output wire [SPAD_AW-1:0]    spad_raddr,
    input  wire [COLS*IN_W-1:0]  spad_rdata,     // registered twice: the word read 3 cycles before
    output wire                  pmem_re,
    output wire [PMEM_AW-1:0]    pmem_raddr,
    input  wire [COLS*(ACC_W+22)-1:0] pmem_rdata,   // registered: the word read 3 cycles before (the top's address register, then 2)
    // the requant units
    output wire                  rq_in_valid,
    output wire [COLS*ACC_W-1:0] rq_acc,
    output wire [COLS*17-1:0]    rq_mult,
    output wire [5:0]            rq_shift,
    output wire                  rq_pair,
    input  wire                  rq_out_valid,
    input  wire [COLS*IN_W-1:0]  rq_y,
    input  wire [COLS*ACC_W-1:0] rq_prod,
    // scratchpad writes
    output wire                  spad_we,
    output wire [SPAD_AW-1:0]    spad_waddr,
    output wire [COLS*IN_W-1:0]  spad_wdata,
    output wire                  active,
    output wire                  fin
);
    localparam integer D_WIN = 9 + RQ_LAT;
    localparam integer D_ELT = 7 + RQ_LAT;
    localparam [3:0] W_MAX = 4'd0, W_COPY = 4'd2;
    localparam [3:0] E_ADD = 4'd0, E_MUL = 4'd1, E_CLIP = 4'd3, E_LUT = 4'd4;

    reg run, win;
    wire go = go_win | go_elt;

    // the sub-op and the operands' signedness, taken at go (no data reaches the lanes before
    // go + 3): the instruction register's fields fan out across the die, and the lanes' compare
    // and add chains need them within the cycle (f_sub -> the WINDOW MAX compare -> lv was the 8x8
    // array's critical path on the ECP5-85F at 96.3 MHz)
    reg s_wmax, s_winu, s_emul, s_eadd, s_eclip, s_lut, as_q, bs_q;
    always @(posedge clk) begin
        if (go) begin
            s_wmax <= (sub == W_MAX); s_winu <= (sub == W_MAX) | (sub == W_COPY);
            s_emul <= (sub == E_MUL); s_eadd <= (sub == E_ADD); s_eclip <= (sub == E_CLIP);
            as_q <= a_signed; bs_q <= b_signed;
            s_lut <= go_elt & (sub == E_LUT);  // a LUT ELTWISE: one register, as it selects the write data
        end
    end

    // -- sequencers -----------------------------------------------------------------------------
    wire win_body, elt_body, e_b;
    wire [31:0] e_raddr;
    wire [7:0]  e_lane;
    nnf_window_seq u_wseq (
        .clk(clk), .rst(rst), .go(go_win), .out_h(out_h), .out_w(out_w), .n_words(n_words),
        .kh(kh), .kw(kw), .sh(sh), .sw(sw), .dh(dh), .dw(dw), .pt(pt), .pl(pl),
        .body(win_body), .t_ihp(t_ihp), .t_iwp(t_iwp), .t_kdh(t_kdh), .t_kdw(t_kdw), .t_cw(t_cw),
        .t_tag(t_tag));
    assign t_v = win_body;
    nnf_eltwise_seq #(.COLS(COLS)) u_eseq (
        .clk(clk), .rst(rst), .go(go_elt), .sub(sub), .out_h(out_h), .out_w(out_w),
        .n_words(n_words), .in_base(in_base), .in_ps(in_ps), .b_base(b_base), .b_ps(b_ps),
        .body(elt_body), .raddr(e_raddr), .tag_b(e_b), .tag_lane(e_lane));
    assign spad_raddr = e_raddr[SPAD_AW-1:0];

    // -- fixed drain -------------------------------------------------------------------------------
    wire body = win_body | elt_body;
    reg [15:0] dcnt;
    wire [15:0] d_tail_m1 = win ? D_WIN[15:0] - 16'd1 : D_ELT[15:0] - 16'd1;
    assign fin = run & ~body & (dcnt == d_tail_m1);
    assign active = run;
    always @(posedge clk) begin
        if (rst) begin
            run <= 1'b0; win <= 1'b0; dcnt <= 16'd0;
        end else begin
            if (go) begin
                run <= 1'b1; win <= go_win;
            end else if (fin) begin
                run <= 1'b0;
            end
            dcnt <= (go | body) ? 16'd0 : dcnt + 16'd1;
        end
    end

    // -- the data cycle: the tap/word on spad_rdata ------------------------------------------------
    wire wd_v, wd_inb, wd_first, wd_last;   // WINDOW
    nnf_delay #(.WIDTH(4), .DEPTH(3)) u_wd (.clk(clk), .d({ag_v & run & win, ag_inb, ag_tag}),
                                            .q({wd_v, wd_inb, wd_first, wd_last}));
    wire ed_v, ed_b;                          // ELTWISE
    wire [7:0] ed_lane;
    nnf_delay #(.WIDTH(10), .DEPTH(3)) u_ed (.clk(clk), .d({elt_body, e_b, e_lane}), .q({ed_v, ed_b, ed_lane}));
    wire lut = s_lut;

    // each lane's code, extended by the reading operand's signedness
    wire [COLS*ACC_W-1:0] xa, xb;
    genvar j;
    generate
        for (j = 0; j < COLS; j = j + 1) begin : g_ext
            wire [IN_W-1:0] code = spad_rdata[j*IN_W +: IN_W];
            assign xa[j*ACC_W +: ACC_W] = {{(ACC_W - IN_W){as_q & code[IN_W-1]}}, code};
            assign xb[j*ACC_W +: ACC_W] = {{(ACC_W - IN_W){bs_q & code[IN_W-1]}}, code};
        end
    endgenerate

    reg [COLS*ACC_W-1:0] lv, ha;   // lane values (WINDOW accumulators); MUL's held a
    reg [COLS*17-1:0]    lm;
    reg [5:0]            ln;
    reg                  lvalid, lpair, lmul1;
    wire win_unit = s_winu;   // MAX, COPY: rq(v, 1, 0)
    wire elt_unit = s_eclip;
    integer l;
    always @(posedge clk) begin
        lvalid <= 1'b0;
        lmul1 <= 1'b0;
        if (wd_v) begin
            for (l = 0; l < COLS; l = l + 1) begin
                if (s_wmax) begin
                    if (wd_first)
                        lv[l*ACC_W +: ACC_W] <= wd_inb ? xa[l*ACC_W +: ACC_W] : {1'b1, {(ACC_W - 1){1'b0}}};
                    else if (wd_inb && ($signed(xa[l*ACC_W +: ACC_W]) > $signed(lv[l*ACC_W +: ACC_W])))
                        lv[l*ACC_W +: ACC_W] <= xa[l*ACC_W +: ACC_W];
                end else begin
                    lv[l*ACC_W +: ACC_W] <= (wd_first ? {ACC_W{1'b0}} : lv[l*ACC_W +: ACC_W]) +
                                            (wd_inb ? xa[l*ACC_W +: ACC_W] : {ACC_W{1'b0}});
                end
                lm[l*17 +: 17] <= win_unit ? 17'd1 : {1'b0, m_a};
            end
            ln <= win_unit ? 6'd0 : n_a[5:0];
            lpair <= 1'b0;
            lvalid <= wd_last;
        end else if (ed_v && !lut) begin
            for (l = 0; l < COLS; l = l + 1) begin
                if (s_emul) begin
                    if (!ed_b) begin
                        ha[l*ACC_W +: ACC_W] <= xa[l*ACC_W +: ACC_W];
                    end else begin
                        lv[l*ACC_W +: ACC_W] <= ha[l*ACC_W +: ACC_W];
                        lm[l*17 +: 17] <= xb[l*ACC_W +: 17];
                    end
                end else begin
                    lv[l*ACC_W +: ACC_W] <= ed_b ? xb[l*ACC_W +: ACC_W] : xa[l*ACC_W +: ACC_W];
                    lm[l*17 +: 17] <= elt_unit ? 17'd1 : {1'b0, ed_b ? m_b : m_a};
                end
            end
            ln <= (elt_unit | s_emul) ? 6'd0 : (ed_b ? n_b[5:0] : n_a[5:0]);
            lpair <= s_eadd & ed_b;
            lvalid <= s_emul ? 1'b0 : (s_eadd ? ed_b : 1'b1);
            lmul1 <= s_emul & ed_b;
        end
    end

    // MUL's second pass: the product a*b is on rq_prod 3 cycles after the first pass
    wire fb;
    nnf_delay #(.WIDTH(1), .DEPTH(3)) u_fb (.clk(clk), .d(lmul1), .q(fb));
    generate
        for (j = 0; j < COLS; j = j + 1) begin : g_rq
            assign rq_acc[j*ACC_W +: ACC_W] = fb ? rq_prod[j*ACC_W +: ACC_W] : lv[j*ACC_W +: ACC_W];
            assign rq_mult[j*17 +: 17] = fb ? {1'b0, m_a} : lm[j*17 +: 17];
        end
    endgenerate
    assign rq_shift = fb ? n_a[5:0] : ln;
    assign rq_pair = ~fb & lpair;
    assign rq_in_valid = run & (fb | lvalid);

    // -- LUT: lane ed_lane of the word on spad_rdata indexes PMEM ----------------------------------
    wire [IN_W-1:0] cur = spad_rdata[ed_lane*IN_W +: IN_W];
    wire [31:0]     cur_x = {{(32 - IN_W){as_q & cur[IN_W-1]}}, cur};
    reg [31:0]      lut_addr;
    reg             lut_re, lut_last, lut_dv1, lut_dlast1, lut_dv0, lut_dlast0, lut_dv, lut_dlast, lut_wv;
    reg [COLS*IN_W-1:0] o_sr;
    localparam [7:0] COLS_M1 = COLS[7:0] - 8'd1;
    always @(posedge clk) begin
        lut_addr <= p_base + cur_x - lut_offset;
        lut_re <= ed_v & lut & run;
        lut_last <= (ed_lane == COLS_M1);
        // the word comes 3 cycles after the read: the top's address register, then 2 registers
        lut_dv1 <= lut_re;
        lut_dlast1 <= lut_last;
        lut_dv0 <= lut_dv1;
        lut_dlast0 <= lut_dlast1;
        lut_dv <= lut_dv0;
        lut_dlast <= lut_dlast0;
        lut_wv <= lut_dv & lut_dlast;
    end
    generate
        if (COLS == 1) begin : g_o1
            always @(posedge clk) if (lut_dv) o_sr <= pmem_rdata[IN_W-1:0];
        end else begin : g_on
            always @(posedge clk) if (lut_dv) o_sr <= {pmem_rdata[IN_W-1:0], o_sr[COLS*IN_W-1:IN_W]};
        end
    endgenerate
    assign pmem_re = lut_re;
    assign pmem_raddr = lut_addr[PMEM_AW-1:0];

    // -- write sequencer: out_base + p*out_ps + c, in order ----------------------------------------
    // wr_lc = (wr_c == n_words-1), a register computed a cycle ahead (nw1, nwm2 taken at go)
    reg [15:0] wr_c, nwm2;
    reg [31:0] wr_pix, wr_addr;
    reg        wr_lc, nw1;
    wire we = run & (lut ? lut_wv : rq_out_valid);
    always @(posedge clk) begin
        if (go) begin
            wr_c <= 16'd0; wr_pix <= out_base; wr_addr <= out_base;
            nw1 <= (n_words == 16'd1); wr_lc <= (n_words == 16'd1); nwm2 <= n_words - 16'd2;
        end else if (we) begin
            if (wr_lc) begin
                wr_c <= 16'd0; wr_lc <= nw1;
                wr_pix <= wr_pix + {16'd0, out_ps}; wr_addr <= wr_pix + {16'd0, out_ps};
            end else begin
                wr_c <= wr_c + 16'd1; wr_lc <= (wr_c == nwm2);
                wr_addr <= wr_addr + 32'd1;
            end
        end
    end
    assign spad_we = we;
    assign spad_waddr = wr_addr[SPAD_AW-1:0];
    assign spad_wdata = lut ? o_sr : rq_y;
endmodule
