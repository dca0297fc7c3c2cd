// nnf_gemm_seq: the GEMM address generator: one k-step a cycle, no bubbles between tiles.
//
// Loop nest (one iteration a cycle; docs/systolic.md "Dataflow (GEMM)"):
//   for n < n_words:                         output-channel word
//     for each tile of ROWS output pixels:   m0 = 0, ROWS, ...
//       for ki < kh, kj < kw, q < k_words:   input word cw = n*k_step + q of tap (ki, kj)
//         for p < COLS:                      lane p of that word = k-step; row p's read phase
// In phase p < ROWS the sequencer requests the tap (pixel m0+p, ki, kj, cw) for row p from
// nnf_tap_agen: each row reads one word every COLS cycles, in its own phase, so the rows come
// out skewed by one cycle each as the array needs.  The pixel walk (oh, ow, ihp = oh*sh - pt,
// iwp = ow*sw - pl) and the kernel offsets (kdh = ki*dh, kdw = kj*dw) are running sums.
// w_addr = w_base + n*K + k counts every cycle (tiles of one n re-read the same K words).
//
// With `shared`, a codebook phase first reads the 2^idx_bits entries at PMEM[p_base + n_words + e],
// one a cycle (cb_re/cb_addr/cb_e).
//
// Every loop-end condition is a register computed a cycle ahead (an increment, a compare and the
// counter's enable in one cycle missed 100 MHz): lp = (p == COLS-1), lq = (q == k_words-1),
// lkj, lki, ln likewise; for the pixel, owl = (ow == out_w-1), ohge = (oh >= out_h) and ohge1 =
// (oh+1 >= out_h), so "the pixel after this one is past the end" is owl ? ohge1 : ohge.  Each
// flag of a counter's next value is a compare of the counter's current value with a constant
// taken at go (k_words-2, out_w-2, ...), or a constant for a counter that restarts at 0.
//
// Outputs are registers valid in the issue cycle (t_v/t_pv too): k0 marks k-step 0 of each tile; after the last k-step, `flush` (with k0) marks one
// more wavefront that pushes the last tile out of the array.  Latency: the first k-step issues
// the cycle after go (after the codebook phase with `shared`).
module nnf_gemm_seq #(
    parameter integer ROWS = 4,
    parameter integer COLS = 4,
    parameter integer TAG_W = 2
) (
    input  wire             clk,
    input  wire             rst,
    input  wire             go,
    input  wire [15:0]      out_h,
    input  wire [15:0]      out_w,
    input  wire [15:0]      n_words,
    input  wire [15:0]      k_words,
    input  wire [15:0]      k_step,
    input  wire [7:0]       kh,
    input  wire [7:0]       kw,
    input  wire [7:0]       sh,
    input  wire [7:0]       sw,
    input  wire [7:0]       dh,
    input  wire [7:0]       dw,
    input  wire [7:0]       pt,
    input  wire [7:0]       pl,
    input  wire [31:0]      w_base,
    input  wire [31:0]      p_base,
    input  wire             shared,
    input  wire [2:0]       idx_bits,
    output reg              cb_re,
    output reg  [31:0]      cb_addr,
    output reg  [7:0]       cb_e,
    output wire             t_v,
    output wire             t_pv,
    output wire [25:0]      t_ihp,
    output wire [25:0]      t_iwp,
    output wire [15:0]      t_kdh,
    output wire [15:0]      t_kdw,
    output wire [15:0]      t_cw,
    output wire [TAG_W-1:0] t_row,
    output reg  [31:0]      w_addr,
    output reg              k0,
    output reg  [31:0]      p_addr,
    output reg              flush
);
    localparam [1:0] IDLE = 2'd0, CB = 2'd1, BODY = 2'd2;

    reg [1:0]  phase;
    reg [7:0]  p;
    reg [15:0] q, n, cw, cwn, kdh, kdw;
    reg [7:0]  ki, kj;
    reg [15:0] oh, ow, ts_oh, ts_ow;       // current pixel, tile start pixel
    reg [25:0] ihp, iwp, ts_ihp, ts_iwp;
    reg [31:0] wn_base;
    // loop-end flags (see above) and the constants they are computed with
    reg        lp, adv, rv, lq, lkj, lki, ln;
    reg        owl, ohge, ohge1, ts_owl, ts_ohge, ts_ohge1;
    reg        kq1, kj1, ki1, z_owl, z_ohge, z_ohge1;
    reg [15:0] kqm2, nwm2, owm2;
    reg [7:0]  kjm2, kim2;
    reg [17:0] ohm2;                       // signed: out_h - 2
    reg [25:0] z_ihp, z_iwp;               // pixel 0: -pt, -pl

    wire [25:0] neg_pt = 26'd0 - {18'd0, pt};
    wire [25:0] neg_pl = 26'd0 - {18'd0, pl};
    wire empty = (n_words == 16'd0) | (k_words == 16'd0) | (kh == 8'd0) | (kw == 8'd0) |
                 (out_h == 16'd0) | (out_w == 16'd0);

    // the pixel after the current one, and its flags
    wire [15:0] nx_oh = owl ? oh + 16'd1 : oh;
    wire [15:0] nx_ow = owl ? 16'd0 : ow + 16'd1;
    wire [25:0] nx_ihp = owl ? ihp + {18'd0, sh} : ihp;
    wire [25:0] nx_iwp = owl ? z_iwp : iwp + {18'd0, sw};
    wire        nx_owl = owl ? z_owl : (ow == owm2);
    wire        nx_ohge = owl ? ohge1 : ohge;
    wire        nx_ohge1 = owl ? ($signed({2'b0, oh}) >= $signed(ohm2)) : ohge1;

    wire tile_end = lp & lq & lkj & lki;
    wire last_tile = nx_ohge;
    wire [7:0] cb_last = (8'd1 << idx_bits) - 8'd1;
    // p's next value and its flags
    wire       p_first = ({24'd0, p} + 32'd2 == COLS);      // p == COLS-2: the next p is the last
    wire       p_adv = ({24'd0, p} + 32'd3 <= ROWS);        // p+2 < ROWS

    assign t_v = (phase == BODY) & rv;
    assign t_pv = ~ohge;
    assign t_ihp = ihp;
    assign t_iwp = iwp;
    assign t_kdh = kdh;
    assign t_kdw = kdw;
    assign t_cw = cw;
    assign t_row = p[TAG_W-1:0];

    always @(posedge clk) begin
        if (rst) begin
            phase <= IDLE;
            cb_re <= 1'b0;
            k0 <= 1'b0;
            flush <= 1'b0;
        end else if (go) begin
            p <= 8'd0; q <= 16'd0; n <= 16'd0; ki <= 8'd0; kj <= 8'd0;
            cw <= 16'd0; cwn <= 16'd0; kdh <= 16'd0; kdw <= 16'd0;
            oh <= 16'd0; ow <= 16'd0; ihp <= neg_pt; iwp <= neg_pl;
            ts_oh <= 16'd0; ts_ow <= 16'd0; ts_ihp <= neg_pt; ts_iwp <= neg_pl;
            z_ihp <= neg_pt; z_iwp <= neg_pl;
            w_addr <= w_base; wn_base <= w_base; p_addr <= p_base;
            cb_e <= 8'd0;
            cb_addr <= p_base + {16'd0, n_words};
            lp <= (COLS == 1); adv <= (ROWS > 1); rv <= 1'b1;
            lq <= (k_words == 16'd1); lkj <= (kw == 8'd1); lki <= (kh == 8'd1); ln <= (n_words == 16'd1);
            kq1 <= (k_words == 16'd1); kj1 <= (kw == 8'd1); ki1 <= (kh == 8'd1);
            kqm2 <= k_words - 16'd2; kjm2 <= kw - 8'd2; kim2 <= kh - 8'd2; nwm2 <= n_words - 16'd2;
            owl <= (out_w == 16'd1); ohge <= (out_h == 16'd0); ohge1 <= (out_h <= 16'd1);
            ts_owl <= (out_w == 16'd1); ts_ohge <= (out_h == 16'd0); ts_ohge1 <= (out_h <= 16'd1);
            z_owl <= (out_w == 16'd1); z_ohge <= (out_h == 16'd0); z_ohge1 <= (out_h <= 16'd1);
            owm2 <= out_w - 16'd2;
            ohm2 <= {2'b0, out_h} - 18'd2;
            if (shared) begin
                phase <= CB; cb_re <= 1'b1; k0 <= 1'b0; flush <= 1'b0;
            end else begin
                phase <= empty ? IDLE : BODY; k0 <= 1'b1; flush <= empty;
            end
        end else begin
            k0 <= 1'b0;
            flush <= 1'b0;
            case (phase)
                CB: begin
                    cb_e <= cb_e + 8'd1;
                    cb_addr <= cb_addr + 32'd1;
                    if (cb_e == cb_last) begin
                        cb_re <= 1'b0;
                        phase <= empty ? IDLE : BODY;
                        k0 <= 1'b1;
                        flush <= empty;
                    end
                end
                BODY: begin
                    w_addr <= w_addr + 32'd1;
                    p <= lp ? 8'd0 : p + 8'd1;
                    lp <= lp ? (COLS == 1) : p_first;
                    adv <= lp ? (ROWS > 1) : p_adv;
                    rv <= lp | adv;
                    k0 <= tile_end;
                    if (!lp) begin
                        if (adv) begin
                            oh <= nx_oh; ow <= nx_ow; ihp <= nx_ihp; iwp <= nx_iwp;
                            owl <= nx_owl; ohge <= nx_ohge; ohge1 <= nx_ohge1;
                        end
                    end else if (!tile_end) begin
                        oh <= ts_oh; ow <= ts_ow; ihp <= ts_ihp; iwp <= ts_iwp;
                        owl <= ts_owl; ohge <= ts_ohge; ohge1 <= ts_ohge1;
                        if (!lq) begin
                            q <= q + 16'd1; cw <= cw + 16'd1; lq <= (q == kqm2);
                        end else begin
                            q <= 16'd0; cw <= cwn; lq <= kq1;
                            if (!lkj) begin
                                kj <= kj + 8'd1; kdw <= kdw + {8'd0, dw}; lkj <= (kj == kjm2);
                            end else begin
                                kj <= 8'd0; kdw <= 16'd0; lkj <= kj1;
                                ki <= ki + 8'd1; kdh <= kdh + {8'd0, dh}; lki <= (ki == kim2);
                            end
                        end
                    end else begin
                        q <= 16'd0; kj <= 8'd0; ki <= 8'd0; kdw <= 16'd0; kdh <= 16'd0;
                        lq <= kq1; lkj <= kj1; lki <= ki1;
                        if (!last_tile) begin
                            // next tile of this output-channel word: the pixel after this tile's last row
                            oh <= nx_oh; ow <= nx_ow; ihp <= nx_ihp; iwp <= nx_iwp;
                            owl <= nx_owl; ohge <= nx_ohge; ohge1 <= nx_ohge1;
                            ts_oh <= nx_oh; ts_ow <= nx_ow; ts_ihp <= nx_ihp; ts_iwp <= nx_iwp;
                            ts_owl <= nx_owl; ts_ohge <= nx_ohge; ts_ohge1 <= nx_ohge1;
                            cw <= cwn;
                            w_addr <= wn_base;
                        end else begin
                            // next output-channel word: back to pixel 0, the next K weights
                            oh <= 16'd0; ow <= 16'd0; ihp <= z_ihp; iwp <= z_iwp;
                            owl <= z_owl; ohge <= z_ohge; ohge1 <= z_ohge1;
                            ts_oh <= 16'd0; ts_ow <= 16'd0; ts_ihp <= z_ihp; ts_iwp <= z_iwp;
                            ts_owl <= z_owl; ts_ohge <= z_ohge; ts_ohge1 <= z_ohge1;
                            n <= n + 16'd1; ln <= (n == nwm2);
                            cwn <= cwn + k_step; cw <= cwn + k_step;
                            p_addr <= p_addr + 32'd1;
                            wn_base <= w_addr + 32'd1;
                            if (ln) begin
                                phase <= IDLE;
                                flush <= 1'b1;
                            end
                        end
                    end
                end
                default: ;
            endcase
        end
    end
endmodule
