// nnf_array: ROWS x COLS output-stationary MAC array (nnf_pe), with the weight skew, the
// per-column bias registers and the per-column OR of finishing rows.
//
// Dataflow: PE (i, j) owns one accumulator.  Weights enter column j at the top, skewed by j
// cycles, and move down one row a cycle together with the tile's `first` flag; activations
// enter row i at the left and move right one column a cycle.  The caller skews the rows: the
// operand of k-step k must be on a_rows[i] i cycles after that k-step's weights are on w_word.
// When `first` reaches a PE its accumulator still holds the previous tile's finished sum; that
// sum leaves on the PE's res for one cycle and the column ORs its rows (exactly one row of a
// column finishes in any cycle, because a tile is at least COLS >= ROWS k-steps long).
//
// Ports and latency (k-step k's weights and `first` on w_word/first at cycle t):
//   w_word lane j, first     column j's top at t+j; PE (i, j) at t+i+j
//   a_rows lane i            must carry k-step k's operand at t+i (PE (i, j) at t+i+j)
//   a_signed, w_signed       static while an instruction runs (each PE registers them)
//   bias_word lane j         sampled one cycle after `first` reaches column j's top (t+j+1):
//                            hold it for COLS cycles from t+1
//   col_res lane j           row i's finished sum of the previous tile at t+i+j+3, when `first`
//                            was high at t (combinational OR of the PEs' result registers)
//   col_first[j]             `first` at column j's top, two cycles later: t+j+2 (when the
//                            column's requant parameters are loaded, one cycle before row 0's sum)
module nnf_array #(
    parameter integer ROWS = 4,
    parameter integer COLS = 4,
    parameter integer IN_W = 8,
    parameter integer ACC_W = 32
) (
    input  wire                  clk,
    input  wire                  a_signed,
    input  wire                  w_signed,
    input  wire [ROWS*IN_W-1:0]  a_rows,
    input  wire [COLS*IN_W-1:0]  w_word,
    input  wire                  first,
    input  wire [COLS*ACC_W-1:0] bias_word,
    output wire [COLS*ACC_W-1:0] col_res,
    output wire [COLS-1:0]       col_first
);
    // a_link[(i*(COLS+1)+j)]: operand entering PE (i, j) from the left (j = COLS: leaves the row)
    wire [ROWS*(COLS+1)*IN_W-1:0] a_link;
    // w_link[(i*COLS+j)], f_link: weight / first entering PE (i, j) from above (i = ROWS: leaves)
    wire [(ROWS+1)*COLS*IN_W-1:0] w_link;
    wire [(ROWS+1)*COLS-1:0]      f_link;
    wire [ROWS*COLS*ACC_W-1:0]    res;
    wire [COLS-1:0]               f_top;
    wire [COLS*ACC_W-1:0]         bias_col;
    wire [COLS-1:0]               f_top_d;
    wire [ROWS-1:0]               a_exit;  // xor-reduced operands leaving the last column (unused)

    genvar i, j;
    generate
        for (i = 0; i < ROWS; i = i + 1) begin : g_row_in
            assign a_link[(i*(COLS+1))*IN_W +: IN_W] = a_rows[i*IN_W +: IN_W];
            assign a_exit[i] = ^a_link[(i*(COLS+1)+COLS)*IN_W +: IN_W];
        end
        for (j = 0; j < COLS; j = j + 1) begin : g_col
            // the skew: column j sees the weights and `first` j cycles after column 0
            nnf_delay #(.WIDTH(IN_W + 1), .DEPTH(j)) u_skew (
                .clk(clk), .d({first, w_word[j*IN_W +: IN_W]}),
                .q({f_top[j], w_link[j*IN_W +: IN_W]}));
            assign f_link[j] = f_top[j];
            // the PEs add the bias two cycles after `first` (the registered multiply): the column
            // register takes it one cycle after `first` passes the top and holds it a tile
            reg [ACC_W-1:0] bias_r;
            reg             f_d, f_d2;
            always @(posedge clk) begin
                f_d <= f_top[j];
                f_d2 <= f_d;
                if (f_d) bias_r <= bias_word[j*ACC_W +: ACC_W];
            end
            assign bias_col[j*ACC_W +: ACC_W] = bias_r;
            assign f_top_d[j] = f_d2;
            // the column's finishing row (the others' res are 0)
            reg [ACC_W-1:0] or_v;
            integer r;
            always @* begin
                or_v = {ACC_W{1'b0}};
                for (r = 0; r < ROWS; r = r + 1) or_v = or_v | res[(r*COLS+j)*ACC_W +: ACC_W];
            end
            assign col_res[j*ACC_W +: ACC_W] = or_v;
        end
        for (i = 0; i < ROWS; i = i + 1) begin : g_pe_row
            for (j = 0; j < COLS; j = j + 1) begin : g_pe
                nnf_pe #(.IN_W(IN_W), .ACC_W(ACC_W)) u_pe (
                    .clk(clk), .a_signed(a_signed), .w_signed(w_signed),
                    .a_in(a_link[(i*(COLS+1)+j)*IN_W +: IN_W]),
                    .w_in(w_link[(i*COLS+j)*IN_W +: IN_W]),
                    .first_in(f_link[i*COLS+j]),
                    .bias(bias_col[j*ACC_W +: ACC_W]),
                    .a_out(a_link[(i*(COLS+1)+j+1)*IN_W +: IN_W]),
                    .w_out(w_link[((i+1)*COLS+j)*IN_W +: IN_W]),
                    .first_out(f_link[(i+1)*COLS+j]),
                    .res(res[(i*COLS+j)*ACC_W +: ACC_W]));
            end
        end
    endgenerate

    assign col_first = f_top_d;

    // operands leaving the last column / row are not used
    wire unused_edges = &{1'b0, a_exit, w_link[(ROWS+1)*COLS*IN_W-1 -: COLS*IN_W], f_link[(ROWS+1)*COLS-1 -: COLS]};
endmodule
