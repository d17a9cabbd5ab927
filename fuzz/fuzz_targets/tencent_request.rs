//! A Tencent RTA request body: the wire-shape bound, prost's decode and the
//! translation to device keys, OS and experiments, as `POST /rta/tencent`
//! does before deciding. Also the answer side's `dsp_tag` on the strings
//! the request carries (cut on a char boundary, at most 20 bytes).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rta_engine::serve::limits::MAX_EXPERIMENTS;
use rta_engine::serve::tencent::{
    API, MAX_DSP_TAG, MAX_QAID_INFOS, dsp_tag, read_request, translate,
};

fuzz_target!(|body: &[u8]| {
    let Ok(req) = read_request(body) else {
        return;
    };
    let _ = (req.is_ping(), req.is_test());
    let t = translate(&req, API);
    // five single ids, then two per CAID entry looked at
    assert!(t.devices.len() <= 5 + 2 * MAX_QAID_INFOS);
    assert!(t.experiments.len() <= MAX_EXPERIMENTS);
    let strings = req.id.iter().chain(req.device.iter().flat_map(|d| {
        d.imei_md5sum
            .iter()
            .chain(&d.oaid_md5sum)
            .chain(&d.idfa_md5sum)
    }));
    for s in strings {
        let tag = dsp_tag(s);
        assert!(tag.len() <= MAX_DSP_TAG, "{tag:?} from {s:?}");
    }
});
