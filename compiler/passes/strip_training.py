"""Remove what only training needs.

    dropout(x)[0]                          -> x
    batch_norm(x, ..., training=True)      -> batch_norm(x, ..., training=False)

Identity nodes never reach Relax (the importer forwards their input).  A model exported
with ``TrainingMode.PRESERVE`` then computes exactly what its eval-mode export computes:
batch norm uses the running statistics, and its running-statistics outputs, which nothing
consumes at inference, are removed by dead-code elimination.
"""

from __future__ import annotations

from ..frontend.relax_utils import IRModule, apply_rules, is_op, is_tuple_get_item, module_pass, op, wildcard

_x = wildcard()
_dropout_out = is_tuple_get_item(is_op("relax.nn.dropout")(_x), 0)
_bn = is_op("relax.nn.batch_norm")(wildcard(), wildcard(), wildcard(), wildcard(), wildcard())


def _drop_dropout(call, m):
    return m[_x]  # dropout(x)[0] -> x


def _bn_inference(call, m):
    if not call.attrs.training:
        return call
    a = call.attrs
    return op.nn.batch_norm(
        *call.args, axis=a.axis, epsilon=float(a.epsilon), center=bool(a.center),
        scale=bool(a.scale), momentum=float(a.momentum), training=False,
    )


RULES = [(_dropout_out, _drop_dropout), (_bn, _bn_inference)]


@module_pass("nnforge.StripTraining")
def strip_training(mod: IRModule, _ctx) -> IRModule:
    """Drop Dropout and switch BatchNormalization to inference (running statistics)."""
    return apply_rules(mod, RULES)
