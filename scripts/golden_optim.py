#!/usr/bin/python3
"""Golden values for src/optim, computed with Debian 12's PyTorch 1.13 (float64).

Run: /usr/bin/python3 scripts/golden_optim.py   (writes test/golden/optim/*.json; it re-runs itself
under `python3 -O`, see the end of the file)

Every file is plain JSON (no Infinity/NaN literals: non-finite values are injected by the tests from
an `inject` description). Tensors are nested lists of float64 values.

- adamw.json / sgd.json: torch.optim.AdamW / torch.optim.SGD (single-tensor path) over a few steps
  with several parameter groups, per-step learning rates (as a schedule would set them) and
  parameters that have no gradient on some steps (they must be skipped).
- lars.json: MAE's util/lars.py LARS (copied below), plus this project's `exclude` extension.
- clip.json: torch.nn.utils.clip_grad_norm_.
- grad_scaler.json: torch.cuda.amp.GradScaler's Python logic driven on CPU. PyTorch 1.13 has the two
  AMP kernels only for CUDA, so they are replaced by line-for-line Python ports of the CUDA kernels
  (aten/src/ATen/native/cuda/AmpKernels.cu); everything else is PyTorch's own GradScaler code.
- schedule.json: MAE's util/lr_sched.adjust_learning_rate and torch's MultiStepLR / StepLR.
- param_groups.json: timm's param_groups_weight_decay and MAE's util/lr_decay.param_groups_lrd.
"""
import json
import math
import os
import warnings

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'test', 'golden', 'optim')
torch.set_default_dtype(torch.float64)


def tl(t):
    return t.detach().tolist()


def dump(name, obj):
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, name)
    with open(path, 'w') as f:
        json.dump(obj, f, allow_nan=False, indent=None, separators=(',', ':'))
        f.write('\n')
    print('wrote', os.path.relpath(path))


SHAPES = [('blocks.0.attn.qkv.weight', (4, 3)), ('blocks.0.attn.qkv.bias', (4,)),
          ('cls_token', (1, 1, 3)), ('head.weight', (2, 4))]


def make_params(seed):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(s, generator=g).requires_grad_(True) for n, s in SHAPES}


def make_grads(seed, steps, skip):
    """grads[step][name] (None where (step, name) is in skip)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for k in range(steps):
        out.append({n: (None if (k, n) in skip else torch.randn(s, generator=g)) for n, s in SHAPES})
    return out


def run_case(make_opt, group_names, group_hyper, lrs, seed=0, steps=6, skip=()):
    """Runs an optimiser over per-step grads; returns a JSON case."""
    params = make_params(seed)
    initial = {n: tl(p) for n, p in params.items()}
    grads = make_grads(seed + 100, steps, set(skip))
    groups = [dict(params=[params[n] for n in names], **hyper) for names, hyper in zip(group_names, group_hyper)]
    opt = make_opt(groups)
    expected = []
    for k in range(steps):
        for gi, group in enumerate(opt.param_groups):
            group['lr'] = lrs[k][gi]
        for n, p in params.items():
            p.grad = None if grads[k][n] is None else grads[k][n].clone()
        opt.step()
        expected.append({n: tl(p) for n, p in params.items()})
    return dict(
        groups=[dict(params=names, **hyper) for names, hyper in zip(group_names, group_hyper)],
        initial=initial,
        steps=[dict(lrs=lrs[k], grads={n: (None if g is None else tl(g)) for n, g in grads[k].items()})
               for k in range(steps)],
        expected=expected,
    )


TWO_GROUPS = [['blocks.0.attn.qkv.weight', 'head.weight'], ['blocks.0.attn.qkv.bias', 'cls_token']]
ONE_GROUP = [[n for n, _ in SHAPES]]
SKIP = [(1, 'blocks.0.attn.qkv.bias'), (2, 'blocks.0.attn.qkv.bias'), (3, 'head.weight'), (0, 'cls_token')]


def lr_seq(base, steps, groups, scales=None):
    scales = scales or [1.0] * groups
    return [[base * (0.5 + 0.1 * k) * s for s in scales] for k in range(steps)]


# ------------------------------------------------------------------ AdamW

def adamw():
    cases = {}
    cases['wd_two_groups'] = run_case(
        lambda g: torch.optim.AdamW(g, lr=1e-3, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.05, foreach=False),
        TWO_GROUPS,
        [dict(lr=1e-2, betas=[0.9, 0.95], eps=1e-8, weight_decay=0.05),
         dict(lr=1e-2, betas=[0.9, 0.95], eps=1e-8, weight_decay=0.0)],
        lr_seq(1e-2, 6, 2, [1.0, 0.65]), seed=1, skip=SKIP)
    cases['no_wd'] = run_case(
        lambda g: torch.optim.AdamW(g, lr=1e-3, weight_decay=0.0, foreach=False),
        ONE_GROUP, [dict(lr=3e-2, betas=[0.9, 0.999], eps=1e-8, weight_decay=0.0)],
        lr_seq(3e-2, 6, 1), seed=2)
    cases['defaults'] = run_case(
        lambda g: torch.optim.AdamW(g, foreach=False),
        ONE_GROUP, [dict(lr=1e-3, betas=[0.9, 0.999], eps=1e-8, weight_decay=1e-2)],
        [[1e-3]] * 6, seed=3, skip=SKIP)
    o = torch.optim.AdamW([torch.zeros(1)])
    defaults = {k: (list(v) if isinstance(v, tuple) else v) for k, v in o.defaults.items()
                if k in ('lr', 'betas', 'eps', 'weight_decay')}
    dump('adamw.json', dict(defaults=defaults, cases=cases))


# ------------------------------------------------------------------ SGD

def sgd():
    cases = {}
    specs = {
        'momentum': dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=0.0, nesterov=False),
        'nesterov_wd': dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=1e-4, nesterov=True),
        'dampening_wd': dict(lr=0.05, momentum=0.8, dampening=0.1, weight_decay=1e-2, nesterov=False),
        'plain_wd': dict(lr=0.05, momentum=0.0, dampening=0.0, weight_decay=1e-2, nesterov=False),
    }
    for i, (name, h) in enumerate(specs.items()):
        cases[name] = run_case(
            lambda g, h=h: torch.optim.SGD(g, foreach=False, **h),
            ONE_GROUP, [h], lr_seq(h['lr'], 6, 1), seed=10 + i, skip=SKIP)
    # two groups with different weight decay and momentum
    h0 = dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=1e-3, nesterov=True)
    h1 = dict(lr=0.1, momentum=0.5, dampening=0.0, weight_decay=0.0, nesterov=False)
    cases['two_groups'] = run_case(lambda g: torch.optim.SGD(g, lr=0.1, foreach=False), TWO_GROUPS, [h0, h1],
                                   lr_seq(0.1, 6, 2, [1.0, 2.0]), seed=20, skip=SKIP)
    dump('sgd.json', dict(cases=cases))


# ------------------------------------------------------------------ LARS (MAE util/lars.py)

class LARS(torch.optim.Optimizer):
    """MAE's LARS: no rate scaling or weight decay for parameters <= 1D.

    `exclude` (not in MAE) names parameters that are treated as <= 1D even when they are not."""

    def __init__(self, params, lr=0, weight_decay=0, momentum=0.9, trust_coefficient=0.001, exclude=()):
        defaults = dict(lr=lr, weight_decay=weight_decay, momentum=momentum, trust_coefficient=trust_coefficient)
        super().__init__(params, defaults)
        self.exclude = set(id(p) for p in exclude)

    @torch.no_grad()
    def step(self):
        for g in self.param_groups:
            for p in g['params']:
                dp = p.grad
                if dp is None:
                    continue
                if p.ndim > 1 and id(p) not in self.exclude:  # if not normalization gamma/beta or bias
                    dp = dp.add(p, alpha=g['weight_decay'])
                    param_norm = torch.norm(p)
                    update_norm = torch.norm(dp)
                    one = torch.ones_like(param_norm)
                    q = torch.where(param_norm > 0.,
                                    torch.where(update_norm > 0, (g['trust_coefficient'] * param_norm / update_norm), one),
                                    one)
                    dp = dp.mul(q)
                param_state = self.state[p]
                if 'mu' not in param_state:
                    param_state['mu'] = torch.zeros_like(p)
                mu = param_state['mu']
                mu.mul_(g['momentum']).add_(dp)
                p.add_(mu, alpha=-g['lr'])


def lars():
    cases = {}
    h = dict(lr=0.5, weight_decay=0.0, momentum=0.9, trust_coefficient=0.001)
    cases['no_wd'] = run_case(lambda g: LARS(g), ONE_GROUP, [h], lr_seq(0.5, 6, 1), seed=30, skip=SKIP)
    h = dict(lr=0.5, weight_decay=0.05, momentum=0.9, trust_coefficient=0.001)
    cases['wd'] = run_case(lambda g: LARS(g), ONE_GROUP, [h], lr_seq(0.5, 6, 1), seed=31, skip=SKIP)
    h0 = dict(lr=0.5, weight_decay=0.05, momentum=0.9, trust_coefficient=0.02)
    h1 = dict(lr=0.5, weight_decay=0.0, momentum=0.8, trust_coefficient=0.001)
    cases['two_groups'] = run_case(lambda g: LARS(g), TWO_GROUPS, [h0, h1], lr_seq(0.5, 6, 2), seed=32, skip=SKIP)

    # exclusion: 'head.weight' (2-D) treated as 1-D
    params = make_params(33)
    initial = {n: tl(p) for n, p in params.items()}
    grads = make_grads(133, 6, set())
    h = dict(lr=0.5, weight_decay=0.05, momentum=0.9, trust_coefficient=0.001)
    opt = LARS([dict(params=list(params.values()), **h)], exclude=[params['head.weight']])
    expected = []
    for k in range(6):
        for n, p in params.items():
            p.grad = grads[k][n].clone()
        opt.step()
        expected.append({n: tl(p) for n, p in params.items()})
    cases['exclude_head'] = dict(groups=[dict(params=ONE_GROUP[0], **h)], exclude=['head.weight'], initial=initial,
                                 steps=[dict(lrs=[0.5], grads={n: tl(g) for n, g in grads[k].items()}) for k in range(6)],
                                 expected=expected)

    # zero parameter (param_norm == 0) and zero update (update_norm == 0): trust ratio 1
    p = torch.zeros(3, 2, requires_grad=True)
    q = torch.ones(2, 2, requires_grad=True)
    opt = LARS([p, q], lr=0.1, weight_decay=0.0)
    gp, gq = torch.full((3, 2), 0.5), torch.zeros(2, 2)
    p.grad, q.grad = gp.clone(), gq.clone()
    opt.step()
    cases['degenerate'] = dict(p=dict(initial=[[0.0] * 2] * 3, grad=tl(gp), after=tl(p)),
                               q=dict(initial=[[1.0] * 2] * 2, grad=tl(gq), after=tl(q)), lr=0.1)
    dump('lars.json', dict(cases=cases))


# ------------------------------------------------------------------ clip_grad_norm_

def clip():
    g = torch.Generator().manual_seed(40)
    shapes = [(4, 3), (4,), (2, 2, 2)]
    base = [torch.randn(s, generator=g) for s in shapes]
    cases = {}
    for name, max_norm in [('clips', 1.0), ('no_clip', 1e6), ('clip_3', 3.0)]:
        ps = [torch.zeros(s, requires_grad=True) for s in shapes]
        for p, b in zip(ps, base):
            p.grad = b.clone()
        total = torch.nn.utils.clip_grad_norm_(ps, max_norm)
        cases[name] = dict(max_norm=max_norm, grads=[tl(b) for b in base], total=total.item(),
                           clipped=[tl(p.grad) for p in ps])
    dump('clip.json', dict(cases=cases))


# ------------------------------------------------------------------ GradScaler

def _py_non_finite_check_and_unscale_(grads, found_inf, inv_scale):
    # AmpKernels.cu: found_inf = 1 if any element is non-finite; grads *= inv_scale (always).
    for g in grads:
        if not torch.isfinite(g).all():
            found_inf.fill_(1.0)
        g.mul_(inv_scale)


def _py_amp_update_scale_(current_scale, growth_tracker, found_inf, growth_factor, backoff_factor, growth_interval):
    # AmpKernels.cu amp_update_scale_cuda_kernel, scalar for scalar (scale is float32).
    if found_inf.item():
        current_scale.mul_(backoff_factor)
        growth_tracker.fill_(0)
    else:
        successful = int(growth_tracker.item()) + 1
        if successful == growth_interval:
            new_scale = torch.tensor(current_scale.item() * growth_factor, dtype=torch.float32)
            if math.isfinite(new_scale.item()):
                current_scale.fill_(new_scale.item())
            growth_tracker.fill_(0)
        else:
            growth_tracker.fill_(successful)
    return current_scale


def make_scaler(**kw):
    saved = torch.cuda.is_available
    torch.cuda.is_available = lambda: True
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            s = torch.cuda.amp.GradScaler(**kw)
    finally:
        torch.cuda.is_available = saved
    return s


def grad_scaler():
    torch._amp_foreach_non_finite_check_and_unscale_ = _py_non_finite_check_and_unscale_
    torch._amp_update_scale_ = _py_amp_update_scale_
    defaults = make_scaler().state_dict()

    steps = 12
    kw = dict(init_scale=2.0 ** 10, growth_factor=2.0, backoff_factor=0.5, growth_interval=3)
    inject = {2: ('w', 0, 'inf'), 6: ('b', 1, 'nan'), 7: ('w', 3, '-inf')}
    g = torch.Generator().manual_seed(50)
    w = torch.randn(2, 3, generator=g).requires_grad_(True)
    b = torch.randn(3, generator=g).requires_grad_(True)
    params = {'w': w, 'b': b}
    initial = {n: tl(p) for n, p in params.items()}
    coefs = [{n: torch.randn(p.shape, generator=g) for n, p in params.items()} for _ in range(steps)]
    opt = torch.optim.SGD(list(params.values()), lr=0.1, momentum=0.9, foreach=False)
    scaler = make_scaler(**kw)
    records = []
    for k in range(steps):
        c = {n: v.clone() for n, v in coefs[k].items()}
        if k in inject:
            pn, idx, val = inject[k]
            c[pn].view(-1)[idx] = float(val)
        opt.zero_grad(set_to_none=True)
        loss = sum((p * c[n]).sum() for n, p in params.items())
        scale_before = scaler.get_scale()
        scaler.scale(loss).backward()
        clip = k % 2 == 1
        if clip:
            scaler.unscale_(opt)
            torch.nn.utils.clip_grad_norm_(list(params.values()), 1.0)
        scaler.step(opt)
        found = sum(v.item() for v in scaler._per_optimizer_states[id(opt)]['found_inf_per_device'].values())
        scaler.update()
        records.append(dict(scale_before=scale_before, clip=clip, found_inf=bool(found), scale_after=scaler.get_scale(),
                            growth_tracker=scaler._get_growth_tracker(), params={n: tl(p) for n, p in params.items()}))
    dump('grad_scaler.json', dict(
        defaults=defaults, options=kw, lr=0.1, momentum=0.9, initial=initial,
        coefs=[{n: tl(v) for n, v in c.items()} for c in coefs],
        inject={str(k): dict(param=v[0], index=v[1], value=v[2]) for k, v in inject.items()},
        records=records, final_state=scaler.state_dict()))


# ------------------------------------------------------------------ schedules

def adjust_learning_rate(epoch, lr, min_lr, warmup_epochs, epochs):
    """MAE util/lr_sched.py (the value it assigns to a group without lr_scale)."""
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    return min_lr + (lr - min_lr) * 0.5 * (1. + math.cos(math.pi * (epoch - warmup_epochs) / (epochs - warmup_epochs)))


def schedule():
    cos = []
    for spec in [dict(lr=2e-4 * 4096 / 256, min_lr=0.0, warmup_epochs=3, epochs=12, iters=5),
                 dict(lr=5e-4 * 1024 / 256, min_lr=1e-6, warmup_epochs=2, epochs=10, iters=7),
                 dict(lr=0.1, min_lr=0.0, warmup_epochs=0, epochs=4, iters=3)]:
        pts = []
        for e in range(spec['epochs']):
            for i in range(spec['iters']):
                ep = i / spec['iters'] + e
                pts.append([e, i, ep, adjust_learning_rate(ep, spec['lr'], spec['min_lr'], spec['warmup_epochs'], spec['epochs'])])
        cos.append(dict(spec=spec, points=pts))

    def sched_values(make, n):
        p = torch.zeros(1, requires_grad=True)
        o = torch.optim.SGD([p], lr=0.1)
        s = make(o)
        vals = []
        for _ in range(n):
            vals.append(o.param_groups[0]['lr'])
            o.step()
            s.step()
        return vals

    multistep = dict(lr=0.1, milestones=[3, 6], gamma=0.1,
                     values=sched_values(lambda o: torch.optim.lr_scheduler.MultiStepLR(o, [3, 6], 0.1), 9))
    steplr = dict(lr=0.1, step_size=2, gamma=0.5,
                  values=sched_values(lambda o: torch.optim.lr_scheduler.StepLR(o, 2, 0.5), 7))
    dump('schedule.json', dict(cosine=cos, multistep=multistep, steplr=steplr,
                               blr=[dict(blr=1.5e-4, batch=4096, lr=1.5e-4 * 4096 / 256),
                                    dict(blr=5e-4, batch=1024, lr=5e-4 * 1024 / 256)]))


# ------------------------------------------------------------------ parameter groups

VIT_PARAMS = [
    ('cls_token', (1, 1, 8)), ('pos_embed', (1, 5, 8)), ('patch_embed.proj.weight', (8, 3, 2, 2)),
    ('patch_embed.proj.bias', (8,)),
] + [(f'blocks.{i}.{n}', s) for i in range(3) for n, s in [
    ('norm1.weight', (8,)), ('norm1.bias', (8,)), ('attn.qkv.weight', (24, 8)), ('attn.qkv.bias', (24,)),
    ('attn.proj.weight', (8, 8)), ('attn.proj.bias', (8,)), ('norm2.weight', (8,)), ('norm2.bias', (8,)),
    ('mlp.fc1.weight', (16, 8)), ('mlp.fc1.bias', (16,)), ('mlp.fc2.weight', (8, 16)), ('mlp.fc2.bias', (8,))]] + [
    ('fc_norm.weight', (8,)), ('fc_norm.bias', (8,)), ('head.weight', (10, 8)), ('head.bias', (10,)),
    ('frozen.weight', (4, 4)), ('mask_token', (1, 1, 8)), ('decoder.blocks.0.w', (8, 8))]
FROZEN = {'frozen.weight'}


def param_groups_weight_decay(named, weight_decay=1e-5, no_weight_decay_list=()):
    """timm.optim.optim_factory.param_groups_weight_decay (names instead of tensors)."""
    no_weight_decay_list = set(no_weight_decay_list)
    decay, no_decay = [], []
    for name, shape in named:
        if name in FROZEN:
            continue
        if len(shape) <= 1 or name.endswith('.bias') or name in no_weight_decay_list:
            no_decay.append(name)
        else:
            decay.append(name)
    return [{'params': no_decay, 'weight_decay': 0.}, {'params': decay, 'weight_decay': weight_decay}]


def get_layer_id_for_vit(name, num_layers):
    """MAE util/lr_decay.py."""
    if name in ['cls_token', 'pos_embed']:
        return 0
    elif name.startswith('patch_embed'):
        return 0
    elif name.startswith('blocks'):
        return int(name.split('.')[1]) + 1
    else:
        return num_layers


def param_groups_lrd(named, num_blocks, weight_decay=0.05, no_weight_decay_list=[], layer_decay=.75):
    """MAE util/lr_decay.py (names instead of tensors; group order = first appearance)."""
    param_group_names = {}
    num_layers = num_blocks + 1
    layer_scales = list(layer_decay ** (num_layers - i) for i in range(num_layers + 1))
    for n, shape in named:
        if n in FROZEN:
            continue
        if len(shape) == 1 or n in no_weight_decay_list:
            g_decay = 'no_decay'
            this_decay = 0.
        else:
            g_decay = 'decay'
            this_decay = weight_decay
        layer_id = get_layer_id_for_vit(n, num_layers)
        group_name = 'layer_%d_%s' % (layer_id, g_decay)
        if group_name not in param_group_names:
            param_group_names[group_name] = {'name': group_name, 'lr_scale': layer_scales[layer_id],
                                             'weight_decay': this_decay, 'params': []}
        param_group_names[group_name]['params'].append(n)
    return list(param_group_names.values())


def param_groups():
    named = [(n, list(s)) for n, s in VIT_PARAMS]
    dump('param_groups.json', dict(
        params=[dict(name=n, shape=s, frozen=n in FROZEN) for n, s in named],
        weight_decay=dict(weight_decay=0.05, no_weight_decay_list=['cls_token', 'pos_embed', 'mask_token'],
                          groups=param_groups_weight_decay(named, 0.05, ['cls_token', 'pos_embed', 'mask_token'])),
        lrd=dict(num_blocks=3, weight_decay=0.05, layer_decay=0.65, no_weight_decay_list=['cls_token', 'pos_embed'],
                 groups=param_groups_lrd(named, 3, 0.05, ['cls_token', 'pos_embed'], 0.65))))


if __name__ == '__main__':
    if __debug__:
        # GradScaler asserts that tensors are on CUDA; its logic is device-agnostic otherwise, so the
        # script re-runs itself with assertions off (python -O) to drive it on CPU.
        import sys
        os.execv(sys.executable, [sys.executable, '-O', os.path.abspath(__file__)] + sys.argv[1:])
    print('torch', torch.__version__)
    adamw()
    sgd()
    lars()
    clip()
    grad_scaler()
    schedule()
    param_groups()
