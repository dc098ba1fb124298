//! Unit and property tests for resource arithmetic.

use super::*;
use proptest::prelude::*;

fn r(text: &str) -> Resources {
    Resources::parse(text).unwrap()
}

#[test]
fn scalars_use_three_decimal_fixed_point() {
    let mut a = Resources::new();
    a.add_scalar("cpus", 0.1).unwrap();
    a.add_scalar("cpus", 0.2).unwrap();
    assert_eq!(a.scalar_millis("cpus"), 300);
    assert_eq!(r("cpus:1.5123").scalar_millis("cpus"), 1512);
}

#[test]
fn rejects_negative_nan_and_infinite() {
    let mut a = Resources::new();
    assert!(matches!(
        a.add_scalar("cpus", -1.0),
        Err(ResourceError::Negative { .. })
    ));
    assert!(matches!(
        a.add_scalar("cpus", f64::NAN),
        Err(ResourceError::NotFinite { .. })
    ));
    assert!(matches!(
        a.add_scalar("mem", f64::INFINITY),
        Err(ResourceError::NotFinite { .. })
    ));
    assert!(Resources::parse("cpus:nan").is_err());
    assert!(Resources::parse("cpus:-2").is_err());
    assert!(Resources::parse("cpus").is_err());
    assert!(Resources::parse("ports:[5-1]").is_err());
    assert!(Resources::parse("cpus(web):1").is_err());
    assert!(Resources::parse("x:1;x:[1-2]").is_err());
    assert!(a.is_empty());
}

#[test]
fn parses_the_mesos_text_form() {
    let a = r("cpus:4;mem:4096;disk:20000;ports:[31000-32000];disks:{a,b};cpus(*):1");
    assert_eq!(a.scalar("cpus"), 5.0);
    assert_eq!(a.ranges("ports").unwrap().count(), 1001);
    assert_eq!(
        a.to_string(),
        "cpus:5;mem:4096;disk:20000;ports:[31000-32000];disks:{a,b}"
    );
}

#[test]
fn ranges_subtract_and_contain() {
    let total = r("ports:[1-10, 20-30]");
    let used = r("ports:[5-6, 20-20]");
    let left = total.minus(&used);
    assert_eq!(
        left.ranges("ports").unwrap().to_string(),
        "[1-4, 7-10, 21-30]"
    );
    assert!(total.contains(&used));
    assert!(!left.contains(&used));
    assert!(left.plus(&used) == total);
}

#[test]
fn attributes_are_typed() {
    let attrs = Attribute::parse_all("rack:a;zone:z1;level:3;p:[1-2];s:{x,y}").unwrap();
    assert_eq!(attrs[0].value, AttributeValue::Text("a".into()));
    assert_eq!(attrs[2].value, AttributeValue::Scalar(3.0));
    assert!(matches!(attrs[3].value, AttributeValue::Ranges(_)));
    assert!(matches!(attrs[4].value, AttributeValue::Set(_)));
    assert!(Attribute::parse_all("rack:a;rack:b").is_err());
}

fn arb_resources() -> impl Strategy<Value = Resources> {
    (
        0i64..10_000,
        0i64..100_000,
        0i64..50,
        prop::collection::vec((0u64..200, 0u64..20), 0..4),
        prop::collection::btree_set("[a-d]", 0..3),
    )
        .prop_map(|(cpu, mem, gpu, pieces, set)| {
            let mut r = Resources::new();
            r.add_scalar_millis("cpus", cpu);
            r.add_scalar_millis("mem", mem);
            r.add_scalar_millis("custom", gpu);
            r.add_ranges(
                "ports",
                &Ranges::from_pieces(pieces.into_iter().map(|(b, l)| (b, b + l))),
            );
            r.add_set("disks", set);
            r
        })
}

proptest! {
    #[test]
    fn add_then_subtract_is_identity(a in arb_resources(), b in arb_resources()) {
        // Sets and ranges are unions, so (a + b) - b == a only when they are disjoint; the
        // scalar part always round-trips, and the result is always contained in a + b.
        let sum = a.plus(&b);
        prop_assert!(sum.contains(&a));
        prop_assert!(sum.contains(&b));
        let back = sum.minus(&b);
        prop_assert_eq!(back.known_scalars(), a.known_scalars());
        prop_assert_eq!(back.scalar_millis("custom"), a.scalar_millis("custom"));
    }

    #[test]
    fn subtract_never_goes_negative_and_is_contained(a in arb_resources(), b in arb_resources()) {
        let d = a.minus(&b);
        prop_assert!(a.contains(&d));
        for (_, v) in d.scalars() {
            prop_assert!(v > 0);
        }
    }

    #[test]
    fn ranges_difference_is_disjoint_and_covers(a in prop::collection::vec((0u64..100, 0u64..10), 0..5),
                                                 b in prop::collection::vec((0u64..100, 0u64..10), 0..5)) {
        let a = Ranges::from_pieces(a.into_iter().map(|(x, l)| (x, x + l)));
        let b = Ranges::from_pieces(b.into_iter().map(|(x, l)| (x, x + l)));
        let d = a.difference(&b);
        for v in 0u64..120 {
            let single = Ranges::from_pieces([(v, v)]);
            let in_a = a.contains(&single);
            let in_b = b.contains(&single);
            prop_assert_eq!(d.contains(&single), in_a && !in_b);
        }
    }

    #[test]
    fn parse_never_panics(s in "\\PC{0,40}") {
        let _ = Resources::parse(&s);
        let _ = Attribute::parse_all(&s);
    }
}
