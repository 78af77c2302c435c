// Containers: an indexed list of modules and a sequential chain.
import { Tensor } from '../torch';
import { Module } from './module';

/** Modules registered under '0', '1', ... (state-dict names like `blocks.3.attn.qkv.weight`). */
export class ModuleList<M extends Module = Module> extends Module implements Iterable<M> {
  private readonly items: M[] = [];
  constructor(modules: Iterable<M> = []) {
    super();
    for (const m of modules) this.push(m);
  }
  push(m: M): this {
    this.module(String(this.items.length), m);
    this.items.push(m);
    return this;
  }
  get length(): number {
    return this.items.length;
  }
  at(i: number): M {
    const m = this.items[i < 0 ? this.items.length + i : i];
    if (!m) throw new RangeError(`ModuleList index ${i} out of range (length ${this.items.length})`);
    return m;
  }
  [Symbol.iterator](): Iterator<M> {
    return this.items[Symbol.iterator]();
  }
}

/** A module whose forward maps one tensor to one tensor: what {@link Sequential} chains. */
export interface TensorModule extends Module {
  forward(x: Tensor): Tensor;
}

/** Applies its modules in order; intermediate results are freed as soon as they are consumed (not a kept tensor, such as a module's parameter, that a module returns). */
export class Sequential extends ModuleList<TensorModule> {
  constructor(...modules: TensorModule[]) {
    super(modules);
  }
  forward(x: Tensor): Tensor {
    let cur = x;
    for (const m of this) {
      let next: Tensor;
      try {
        next = m.forward(cur);
      } catch (e) {
        if (cur !== x && !cur.kept) cur.dispose(); // the result of the modules before, which no one else holds
        throw e;
      }
      // (a kept tensor, a module's own parameter or buffer returned as it is, is not the chain's to free)
      if (cur !== x && next !== cur && !cur.kept) cur.dispose();
      cur = next;
    }
    return cur;
  }
}
