// nnf_stream: INPUT and OUTPUT, the AXI4-Stream ports.
//
// INPUT count, out_base: s_axis_tready is high (a register) from the cycle after go until
// `count` words were accepted; word i is written to SPAD[out_base + i] one cycle after its
// handshake.  s_axis_tlast is not checked.
// OUTPUT count, in_base: SPAD[in_base + i] goes out on m_axis in order, tlast on the last word.
// The word comes from a register after the scratchpad's read data, or from the head of a 3-word
// skid buffer when the stream stalled (reads are issued from registers only; see OUTPUT below).
// Latency without stalls: INPUT's last write is in cycle go + 1 + count (isa.IO_DRAIN = 2 cycles
// after the words), OUTPUT's last handshake in go + 2 + count (isa.OUTPUT_DRAIN = 3), where fin is
// high.  With stalls
// (s_axis_tvalid or m_axis_tready low) fin simply waits: the cycle model assumes none.
module nnf_stream #(
    parameter integer WORD_W = 32,
    parameter integer SPAD_AW = 12
) (
    input  wire               clk,
    input  wire               rst,
    input  wire               go_in,
    input  wire               go_out,
    input  wire [15:0]        count,
    input  wire [31:0]        in_base,
    input  wire [31:0]        out_base,
    input  wire [WORD_W-1:0]  s_axis_tdata,
    input  wire               s_axis_tvalid,
    output wire               s_axis_tready,
    output wire [WORD_W-1:0]  m_axis_tdata,
    output wire               m_axis_tvalid,
    input  wire               m_axis_tready,
    output wire               m_axis_tlast,
    output wire [SPAD_AW-1:0] spad_raddr,
    input  wire [WORD_W-1:0]  spad_rdata,
    output wire               spad_we,
    output wire [SPAD_AW-1:0] spad_waddr,
    output wire [WORD_W-1:0]  spad_wdata,
    output wire               active,
    output wire               fin
);
    // -- INPUT --------------------------------------------------------------------------------------
    reg              in_run, in_zero, tready, wv;
    reg [15:0]       in_rem;
    reg [31:0]       in_addr;
    reg [WORD_W-1:0] wbuf;
    reg [SPAD_AW-1:0] wa;
    wire hs_in = s_axis_tvalid & tready;
    wire fin_in = in_run & (in_rem == 16'd0) & (wv | in_zero);
    always @(posedge clk) begin
        if (rst) begin
            in_run <= 1'b0; tready <= 1'b0; wv <= 1'b0; in_rem <= 16'd0; in_zero <= 1'b0;
        end else if (go_in) begin
            in_run <= 1'b1; in_rem <= count; in_addr <= out_base; in_zero <= (count == 16'd0);
            tready <= (count != 16'd0); wv <= 1'b0;
        end else begin
            wv <= hs_in;
            if (hs_in) begin
                wbuf <= s_axis_tdata; wa <= in_addr[SPAD_AW-1:0];
                in_addr <= in_addr + 32'd1;
                in_rem <= in_rem - 16'd1;
                tready <= (in_rem != 16'd1);
            end
            if (fin_in) in_run <= 1'b0;
        end
    end
    assign s_axis_tready = tready;
    assign spad_we = wv;
    assign spad_waddr = wa;
    assign spad_wdata = wbuf;

    // -- OUTPUT -------------------------------------------------------------------------------------
    // Reads are issued from registers only, and the read data goes first into a register of its own
    // (`rq`, no logic before it, so the placer can keep it next to the block RAMs, whose clock-to-out
    // is most of a 10 ns cycle).  The scratchpad port's read enable is tied high in the top: nothing
    // runs from m_axis_tready to the block RAMs' clock enables (through a 16-bit compare and the
    // enables of every scratchpad block, that was the 8x8 array's critical path on the ECP5).
    // A read issued in cycle t has its word in `rq` in t + 2: it goes out from there when the skid
    // buffer is empty, else (or while the stream stalls) it queues behind the buffer's head.  A read
    // is issued while words remain and the buffer has room for every word that may still arrive
    // (occ + the two in flight <= 3).
    reg               out_run, out_late, rd_more, infl1, infl2;
    reg [1:0]         occ;
    reg [15:0]        rd_rem, snd_rem;
    reg [31:0]        out_addr;
    reg [WORD_W-1:0]  rq, buf0, buf1, buf2;
    wire room = ({1'b0, occ} + {2'b0, infl1} + {2'b0, infl2}) < 3'd3;
    wire re = out_run & rd_more & room;
    wire valid = (occ != 2'd0) | infl2;
    wire hs_out = valid & m_axis_tready;
    // count 0 ends a cycle after go + 1 as well (out_late), so every OUTPUT takes count + 3
    wire fin_out = out_run & (((snd_rem == 16'd0) & out_late) | ((snd_rem == 16'd1) & hs_out));
    always @(posedge clk) rq <= spad_rdata;
    always @(posedge clk) begin
        if (rst) begin
            out_run <= 1'b0; out_late <= 1'b0; rd_more <= 1'b0; infl1 <= 1'b0; infl2 <= 1'b0; occ <= 2'd0;
            rd_rem <= 16'd0; snd_rem <= 16'd0;
        end else if (go_out) begin
            out_run <= 1'b1; out_late <= 1'b0; rd_more <= (count != 16'd0); infl1 <= 1'b0; infl2 <= 1'b0;
            occ <= 2'd0; rd_rem <= count; snd_rem <= count; out_addr <= in_base;
        end else begin
            out_late <= out_run;
            infl1 <= re;
            infl2 <= infl1;
            if (re) begin
                rd_rem <= rd_rem - 16'd1;
                rd_more <= (rd_rem != 16'd1);
                out_addr <= out_addr + 32'd1;
            end
            // the queue is buf0..buf[occ-1], then rq when infl2; the stream takes its first word
            case (occ)
                2'd0: if (infl2 & ~hs_out) begin buf0 <= rq; occ <= 2'd1; end
                2'd1: if (hs_out) begin
                          if (infl2) buf0 <= rq; else occ <= 2'd0;
                      end else if (infl2) begin
                          buf1 <= rq; occ <= 2'd2;
                      end
                2'd2: if (hs_out) begin
                          buf0 <= buf1;
                          if (infl2) buf1 <= rq; else occ <= 2'd1;
                      end else if (infl2) begin
                          buf2 <= rq; occ <= 2'd3;
                      end
                default: if (hs_out) begin buf0 <= buf1; buf1 <= buf2; occ <= 2'd2; end  // none in flight
            endcase
            if (hs_out) snd_rem <= snd_rem - 16'd1;
            if (fin_out) out_run <= 1'b0;
        end
    end
    assign spad_raddr = out_addr[SPAD_AW-1:0];
    assign m_axis_tdata = (occ != 2'd0) ? buf0 : rq;
    assign m_axis_tvalid = valid;
    assign m_axis_tlast = valid & (snd_rem == 16'd1);

    assign active = in_run | out_run;
    assign fin = fin_in | fin_out;
endmodule
