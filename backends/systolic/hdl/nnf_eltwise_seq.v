// nnf_eltwise_seq: the ELTWISE address generator.
//
//   for pixel p < out_h*out_w:  for word c < n_words:  for phase ph < phases(sub):
//     ADD, MUL:        ph 0 reads a = SPAD[in_base + p*in_ps + c], ph 1 reads b = SPAD[b_base + p*b_ps + c]
//     REQUANT, CLIP:   ph 0 reads a
//     LUT:             ph 0 reads a; ph 0..COLS-1 look lane ph up (the address stays on a)
//
// raddr is a register valid in the issue cycle (the scratchpad returns the word one cycle
// later); tag is {b phase, lane ph}.  Latency: the first read issues the cycle after go;
// `body` is high in every issue cycle.  The a and b addresses of word c are running registers
// (a_addr = a_pix + c, b_addr = b_pix + c), so each address is one add; the loop-end conditions
// (lph = (ph == ph_last), lc, lwo, loh) are registers computed a cycle ahead from the counters'
// current values and constants taken at go.
module nnf_eltwise_seq #(
    parameter integer COLS = 4
) (
    input  wire        clk,
    input  wire        rst,
    input  wire        go,
    input  wire [3:0]  sub,
    input  wire [15:0] out_h,
    input  wire [15:0] out_w,
    input  wire [15:0] n_words,
    input  wire [31:0] in_base,
    input  wire [15:0] in_ps,
    input  wire [31:0] b_base,
    input  wire [15:0] b_ps,
    output reg         body,
    output reg  [31:0] raddr,
    output wire        tag_b,
    output wire [7:0]  tag_lane
);
    localparam [7:0] COLS8 = COLS[7:0];
    reg [15:0] oh, ow, c;
    reg [7:0]  ph;
    reg [31:0] a_pix, b_pix, a_addr, b_addr;
    reg        two, lph, lc, lwo, loh;
    reg        ph1, c1, ow1;                     // a loop of one iteration
    reg [7:0]  phm1;
    reg [15:0] cm2, owm2, ohm2;

    wire two_g = (sub == 4'd0) | (sub == 4'd1);                       // ADD, MUL
    wire [7:0] ph_last = two_g ? 8'd1 : ((sub == 4'd4) ? COLS8 - 8'd1 : 8'd0);   // LUT: COLS lanes
    wire empty = (n_words == 16'd0) | (out_h == 16'd0) | (out_w == 16'd0);
    wire [31:0] a_next_pix = a_pix + {16'd0, in_ps};
    wire [31:0] b_next_pix = b_pix + {16'd0, b_ps};

    assign tag_b = two & (ph == 8'd1);
    assign tag_lane = ph;

    always @(posedge clk) begin
        if (rst) begin
            body <= 1'b0;
        end else if (go) begin
            body <= ~empty;
            oh <= 16'd0; ow <= 16'd0; c <= 16'd0; ph <= 8'd0;
            a_pix <= in_base; b_pix <= b_base; raddr <= in_base;
            a_addr <= in_base; b_addr <= b_base;
            two <= two_g;
            ph1 <= (ph_last == 8'd0); c1 <= (n_words == 16'd1); ow1 <= (out_w == 16'd1);
            lph <= (ph_last == 8'd0); lc <= (n_words == 16'd1); lwo <= (out_w == 16'd1);
            loh <= (out_h == 16'd1);
            phm1 <= ph_last - 8'd1; cm2 <= n_words - 16'd2; owm2 <= out_w - 16'd2; ohm2 <= out_h - 16'd2;
        end else if (body) begin
            if (!lph) begin
                ph <= ph + 8'd1; lph <= (ph == phm1);
                if (two) raddr <= b_addr;
            end else begin
                ph <= 8'd0; lph <= ph1;
                if (!lc) begin
                    c <= c + 16'd1; lc <= (c == cm2);
                    a_addr <= a_addr + 32'd1; b_addr <= b_addr + 32'd1;
                    raddr <= a_addr + 32'd1;
                end else begin
                    c <= 16'd0; lc <= c1;
                    a_pix <= a_next_pix; b_pix <= b_next_pix;
                    a_addr <= a_next_pix; b_addr <= b_next_pix;
                    raddr <= a_next_pix;
                    if (!lwo) begin
                        ow <= ow + 16'd1; lwo <= (ow == owm2);
                    end else begin
                        ow <= 16'd0; lwo <= ow1;
                        oh <= oh + 16'd1; loh <= (oh == ohm2);
                        if (loh) body <= 1'b0;
                    end
                end
            end
        end
    end
endmodule
