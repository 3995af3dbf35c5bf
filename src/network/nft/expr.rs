//! nf_tables expressions, and the netlink attributes everything in a batch is written in. Only the
//! handful of expressions poc's tables need (for the `ip`/`ip6` tables in `nat.rs` and the bridge
//! family's source checks in `antispoof.rs`).

use super::nf_tables::*;

/// Netlink attributes, appended in order.
#[derive(Default)]
pub(super) struct Attrs(pub(super) Vec<u8>);

impl Attrs {
    pub(super) fn put(&mut self, kind: u16, data: &[u8]) {
        let len = 4 + data.len();
        self.0.extend_from_slice(&(len as u16).to_ne_bytes());
        self.0.extend_from_slice(&kind.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
    }

    pub(super) fn string(&mut self, kind: u16, s: &str) {
        let mut data = s.as_bytes().to_vec();
        data.push(0);
        self.put(kind, &data);
    }

    pub(super) fn be32(&mut self, kind: u16, value: u32) {
        self.put(kind, &value.to_be_bytes());
    }

    pub(super) fn nested(&mut self, kind: u16, fill: impl FnOnce(&mut Attrs)) {
        let mut inner = Attrs::default();
        fill(&mut inner);
        self.put(kind | NLA_F_NESTED, &inner.0);
    }

    /// `data` as a value: `kind { NFTA_DATA_VALUE }`.
    pub(super) fn value(&mut self, kind: u16, data: &[u8]) {
        self.nested(kind, |v| v.put(NFTA_DATA_VALUE, data));
    }
}

/// One nf_tables expression. Loads go to `dreg`; comparisons and masks work on `NFT_REG_1`.
pub(in crate::network) enum Expr {
    Payload {
        base: u32,
        offset: u32,
        len: u32,
        dreg: u32,
    },
    Bitwise {
        mask: Vec<u8>,
    },
    Cmp {
        op: u32,
        data: Vec<u8>,
    },
    Meta {
        key: u32,
        dreg: u32,
    },
    Ct {
        key: u32,
    },
    /// Whether the key that starts at `sreg` is in the set (or, with `invert`, is not).
    Lookup {
        set: &'static str,
        sreg: u32,
        invert: bool,
    },
    /// The address type of the destination.
    Fib,
    Immediate {
        reg: u32,
        data: Vec<u8>,
    },
    Verdict(u32),
    /// DNAT to the address in `NFT_REG_1` and the port in `NFT_REG_2`, of `family`.
    Dnat {
        family: u8,
    },
    Masquerade,
}

impl Expr {
    /// `len` bytes at `offset` of a header, into `NFT_REG_1`.
    pub(in crate::network) fn load(base: u32, offset: u32, len: u32) -> Expr {
        Expr::Payload {
            base,
            offset,
            len,
            dreg: NFT_REG_1,
        }
    }

    pub(in crate::network) fn equals(data: &[u8]) -> Expr {
        Expr::Cmp {
            op: NFT_CMP_EQ,
            data: data.to_vec(),
        }
    }

    pub(in crate::network) fn differs(data: &[u8]) -> Expr {
        Expr::Cmp {
            op: NFT_CMP_NEQ,
            data: data.to_vec(),
        }
    }

    /// An interface name as the kernel's meta expressions load it: NUL-padded to IFNAMSIZ.
    pub(in crate::network) fn ifname(name: &str) -> Vec<u8> {
        let mut bytes = name.as_bytes().to_vec();
        bytes.resize(libc::IFNAMSIZ, 0);
        bytes
    }

    fn name(&self) -> &'static str {
        match self {
            Expr::Payload { .. } => "payload",
            Expr::Bitwise { .. } => "bitwise",
            Expr::Cmp { .. } => "cmp",
            Expr::Meta { .. } => "meta",
            Expr::Ct { .. } => "ct",
            Expr::Lookup { .. } => "lookup",
            Expr::Fib => "fib",
            Expr::Immediate { .. } | Expr::Verdict(_) => "immediate",
            Expr::Dnat { .. } => "nat",
            Expr::Masquerade => "masq",
        }
    }

    /// Appends the expression to a rule's `NFTA_RULE_EXPRESSIONS`.
    pub(super) fn encode(&self, list: &mut Attrs) {
        list.nested(NFTA_LIST_ELEM, |e| {
            e.string(NFTA_EXPR_NAME, self.name());
            e.nested(NFTA_EXPR_DATA, |d| self.encode_data(d));
        });
    }

    fn encode_data(&self, d: &mut Attrs) {
        match self {
            Expr::Payload {
                base,
                offset,
                len,
                dreg,
            } => {
                d.be32(NFTA_PAYLOAD_DREG, *dreg);
                d.be32(NFTA_PAYLOAD_BASE, *base);
                d.be32(NFTA_PAYLOAD_OFFSET, *offset);
                d.be32(NFTA_PAYLOAD_LEN, *len);
            }
            Expr::Bitwise { mask } => {
                d.be32(NFTA_BITWISE_SREG, NFT_REG_1);
                d.be32(NFTA_BITWISE_DREG, NFT_REG_1);
                d.be32(NFTA_BITWISE_LEN, mask.len() as u32);
                d.value(NFTA_BITWISE_MASK, mask);
                d.value(NFTA_BITWISE_XOR, &vec![0; mask.len()]);
            }
            Expr::Cmp { op, data } => {
                d.be32(NFTA_CMP_SREG, NFT_REG_1);
                d.be32(NFTA_CMP_OP, *op);
                d.value(NFTA_CMP_DATA, data);
            }
            Expr::Meta { key, dreg } => {
                d.be32(NFTA_META_DREG, *dreg);
                d.be32(NFTA_META_KEY, *key);
            }
            Expr::Ct { key } => {
                d.be32(NFTA_CT_DREG, NFT_REG_1);
                d.be32(NFTA_CT_KEY, *key);
            }
            Expr::Lookup { set, sreg, invert } => {
                d.string(NFTA_LOOKUP_SET, set);
                d.be32(NFTA_LOOKUP_SREG, *sreg);
                if *invert {
                    d.be32(NFTA_LOOKUP_FLAGS, NFT_LOOKUP_F_INV);
                }
            }
            Expr::Fib => {
                d.be32(NFTA_FIB_DREG, NFT_REG_1);
                d.be32(NFTA_FIB_RESULT, NFT_FIB_RESULT_ADDRTYPE);
                d.be32(NFTA_FIB_FLAGS, NFTA_FIB_F_DADDR);
            }
            Expr::Immediate { reg, data } => {
                d.be32(NFTA_IMMEDIATE_DREG, *reg);
                d.value(NFTA_IMMEDIATE_DATA, data);
            }
            Expr::Verdict(code) => {
                d.be32(NFTA_IMMEDIATE_DREG, NFT_REG_VERDICT);
                d.nested(NFTA_IMMEDIATE_DATA, |v| {
                    v.nested(NFTA_DATA_VERDICT, |c| c.be32(NFTA_VERDICT_CODE, *code))
                });
            }
            Expr::Dnat { family } => {
                d.be32(NFTA_NAT_TYPE, NFT_NAT_DNAT);
                d.be32(NFTA_NAT_FAMILY, *family as u32);
                d.be32(NFTA_NAT_REG_ADDR_MIN, NFT_REG_1);
                d.be32(NFTA_NAT_REG_PROTO_MIN, NFT_REG_2);
            }
            Expr::Masquerade => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_are_aligned_and_nested_flagged() {
        let mut a = Attrs::default();
        a.string(1, "poc");
        assert_eq!(a.0, [8, 0, 1, 0, b'p', b'o', b'c', 0]);
        a.nested(4, |n| n.be32(1, 2));
        assert_eq!(&a.0[8..], &[12, 0, 4, 0x80, 8, 0, 1, 0, 0, 0, 0, 2]);
    }
}
